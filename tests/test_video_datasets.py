"""Video retrieval dataset loaders (msrvtt, msvd, didemo, activitynet, lsmdc, vatex, youcook2) on hand-made
fixtures in the real annotation layouts (tests/fixtures/video_datasets/README.md)."""
from __future__ import annotations

import collections
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from xmr.data import DATASETS, load_dataset
from xmr.data.msvd import safe_load_caption_pickle
from xmr.data.vatex import parse_video_id
from xmr.errors import ConfigError
from xmr.eval import evaluate_sims

FIX = Path(__file__).resolve().parent / "fixtures" / "video_datasets"
MSRVTT_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "msrvtt-mini"

VIDEO_SCHEMES = ("msrvtt", "msvd", "didemo", "activitynet", "lsmdc", "vatex", "youcook2")


def test_every_video_scheme_is_registered():
    for scheme in VIDEO_SCHEMES:
        assert scheme in DATASETS


# ----------------------------------------------------------------------------------------------- MSR-VTT


def test_msrvtt_default_is_1k_a_one_caption_per_video():
    ds = load_dataset(f"msrvtt:{FIX / 'msrvtt'}")
    assert [it.id for it in ds.items] == ["video9771", "video9770"]  # CSV order
    assert ds.texts == ["a girl practices tumbling", "a person is connecting something to system"]
    assert ds.media == [str(FIX / "msrvtt" / "videos" / f"{v}.mp4") for v in ("video9771", "video9770")]
    assert ds.splits == ["1k-A"]
    assert ds.source_files == (str(FIX / "msrvtt" / "MSRVTT_JSFUSION_test.csv"),)


def test_msrvtt_train_lists_take_all_captions_from_data_json():
    ds = load_dataset(f"msrvtt:{FIX / 'msrvtt'}:9k")
    assert [it.id for it in ds.items] == ["video0", "video1", "video2", "video7010"]
    assert ds.items[1].captions == ("a cartoon dog runs", "an animated dog is running", "a dog in a cartoon")
    assert ds.num_texts == 2 + 3 + 2 + 2
    assert {os.path.basename(p) for p in ds.source_files} == {"MSRVTT_train.9k.csv", "MSRVTT_data.json"}
    ds7 = load_dataset(f"msrvtt:{FIX / 'msrvtt'}?split=7k")
    assert [it.id for it in ds7.items] == ["video1", "video0"]  # list order


def test_msrvtt_full_splits_and_options():
    ds = load_dataset(f"msrvtt:{FIX / 'msrvtt'}:full?root=/videos&ext=avi")
    assert [it.id for it in ds.items] == ["video7010", "video9770", "video9771"]
    assert [len(it.captions) for it in ds.items] == [2, 2, 3]  # every caption of each test video
    assert ds.media[0] == "/videos/video7010.avi"
    assert ds.source_files == (str(FIX / "msrvtt" / "MSRVTT_data.json"),)
    assert [it.id for it in load_dataset(f"msrvtt:{FIX / 'msrvtt'}:full-val").items] == ["video2"]
    both = load_dataset(f"msrvtt:{FIX / 'msrvtt'}:full-train+1k-A")
    assert both.splits == ["full-train", "1k-A"] and len(both) == 4
    assert load_dataset(both.spec).texts == both.texts  # canonical spec round-trips


def test_msrvtt_clip4clip_video_folder(tmp_path):
    """CLIP4Clip's MSRVTT.zip unpacks the videos to videos/all/: used when present."""
    shutil.copy(FIX / "msrvtt" / "MSRVTT_JSFUSION_test.csv", tmp_path)
    (tmp_path / "videos" / "all").mkdir(parents=True)
    assert load_dataset(f"msrvtt:{tmp_path}").media[0] == str(tmp_path / "videos" / "all" / "video9771.mp4")


def test_msrvtt_errors(tmp_path):
    with pytest.raises(ConfigError, match="Available splits: 1k-A, 9k"):
        load_dataset(f"msrvtt:{FIX / 'msrvtt'}:test")
    with pytest.raises(ConfigError, match="MSR-VTT folder not found"):
        load_dataset(f"msrvtt:{tmp_path / 'nope'}")
    shutil.copy(FIX / "msrvtt" / "MSRVTT_train.9k.csv", tmp_path)
    with pytest.raises(ConfigError, match=str(tmp_path / "MSRVTT_data.json")):
        load_dataset(f"msrvtt:{tmp_path}:9k")
    with pytest.raises(ConfigError, match=str(tmp_path / "MSRVTT_JSFUSION_test.csv")):
        load_dataset(f"msrvtt:{tmp_path}")
    with pytest.raises(ConfigError, match="ext="):
        load_dataset(f"msrvtt:{FIX / 'msrvtt'}?ext=../x")
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset(f"msrvtt:{FIX / 'msrvtt'}?mode=moments")
    (tmp_path / "MSRVTT_train.7k.csv").write_text("video_id\nvideo404\n")
    shutil.copy(FIX / "msrvtt" / "MSRVTT_data.json", tmp_path)
    with pytest.raises(ConfigError, match=r"MSRVTT_train.7k.csv, line 2: video 'video404' has no sentence"):
        load_dataset(f"msrvtt:{tmp_path}:7k")


def test_msrvtt_caption_jsonl(tmp_path):
    f = tmp_path / "captions_test.jsonl"
    f.write_text(
        '{"caption": "a dog runs", "clip_name": "video1", "retrieval_key": "ret0"}\n'
        '{"caption": "a cat sits", "clip_name": "video2", "retrieval_key": "ret1"}\n'
        '{"caption": "a dog is running", "clip_name": "video1", "retrieval_key": "ret2"}'
    )
    ds = load_dataset(f"msrvtt:{f}")
    assert ds.media == [str(tmp_path / "video1.mp4"), str(tmp_path / "video2.mp4")]
    assert ds.items[0].captions == ("a dog runs", "a dog is running")
    f.write_text('{"caption": "x"}\n')
    with pytest.raises(ConfigError, match="line 1: needs a 'clip_name'"):
        load_dataset(f"msrvtt:{f}")


@pytest.mark.skipif(not MSRVTT_MINI.is_dir(), reason="shared msrvtt-mini data not present")
def test_msrvtt_mini_shared_data():
    ds = load_dataset(f"msrvtt:{MSRVTT_MINI / 'captions_test.jsonl'}", check_media=True)
    assert [it.id for it in ds.items] == ["video9770", "video9771"]
    assert ds.texts[1] == "a little girl does gymnastics"


# -------------------------------------------------------------------------------------------------- MSVD


def test_msvd_splits_and_all_captions():
    ds = load_dataset(f"msvd:{FIX / 'msvd'}:test")
    assert [it.id for it in ds.items] == ["-4wsuPCjDBc_5_15", "-7KMZQEsJW4_205_208", "0lh_UWF9ZP4_62_69"]
    assert [len(it.captions) for it in ds.items] == [2, 3, 1]
    assert ds.items[1].captions == ("a man plays a guitar", "someone is playing guitar", "a person strums a guitar")
    assert ds.media[0] == str(FIX / "msvd" / "YouTubeClips" / "-4wsuPCjDBc_5_15.avi")
    assert ds.splits == ["test"]
    everything = load_dataset(f"msvd:{FIX / 'msvd'}")
    assert everything.splits == ["train", "val", "test"] and len(everything) == 6
    assert load_dataset(f"msvd:{FIX / 'msvd'}:test?captions=first").num_texts == 3


def test_msvd_json_and_pickle_captions(tmp_path):
    for name in ("train_list.txt", "val_list.txt", "test_list.txt"):
        shutil.copy(FIX / "msvd" / name, tmp_path)
    want = load_dataset(f"msvd:{FIX / 'msvd'}:test")
    caps = {it.id: [c.split() for c in it.captions] for it in load_dataset(f"msvd:{FIX / 'msvd'}").items}
    with open(tmp_path / "raw-captions.pkl", "wb") as f:  # CLIP4Clip's layout: token lists
        pickle.dump(caps, f, protocol=2)
    ds = load_dataset(f"msvd:{tmp_path}:test")
    assert ds.texts == want.texts and ds.source_files[-1] == str(tmp_path / "raw-captions.pkl")
    (tmp_path / "raw-captions.json").write_text(json.dumps({k: [" ".join(c) for c in v] for k, v in caps.items()}))
    ds = load_dataset(f"msvd:{tmp_path}:test")  # the JSON wins over the pickle
    assert ds.texts == want.texts and ds.source_files[-1] == str(tmp_path / "raw-captions.json")


def test_msvd_pickle_is_preferred_to_the_corpus_text(tmp_path):
    """CLIP4Clip reads raw-captions.pkl; AllVideoDescriptions.txt is only a fallback."""
    for name in ("test_list.txt", "AllVideoDescriptions.txt"):
        shutil.copy(FIX / "msvd" / name, tmp_path)
    caps = collections.defaultdict(list)  # a pickled defaultdict(list) / OrderedDict is accepted
    caps["-4wsuPCjDBc_5_15"].append(["a", "squirrel", "eats", "."])
    caps["-7KMZQEsJW4_205_208"].append(["guitar", "music"])
    caps["0lh_UWF9ZP4_62_69"] += [["onion"], ["knife", "work"]]
    (tmp_path / "raw-captions.pkl").write_bytes(pickle.dumps(caps))
    ds = load_dataset(f"msvd:{tmp_path}:test")
    assert ds.texts == ["a squirrel eats .", "guitar music", "onion", "knife work"]  # tokens joined by spaces
    (tmp_path / "raw-captions.pkl").write_bytes(pickle.dumps(collections.OrderedDict(caps)))
    assert load_dataset(f"msvd:{tmp_path}:test").texts == ds.texts


class _Evil:
    def __init__(self, victim: str):
        self.victim = victim

    def __reduce__(self):
        return (os.remove, (self.victim,))


def test_msvd_restricted_unpickler_refuses_code(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")
    evil = tmp_path / "raw-captions.pkl"
    for payload in ({"vid": _Evil(str(victim))}, _Evil(str(victim)), {"vid": [np.float32(1.0)]}):
        evil.write_bytes(pickle.dumps(payload))
        with pytest.raises(ConfigError, match="refused"):
            safe_load_caption_pickle(str(evil))
    assert victim.read_text() == "still here"  # nothing ran
    evil.write_bytes(pickle.dumps({"vid": [1, 2]}))  # plain data, wrong shape
    with pytest.raises(ConfigError, match="not a non-empty string"):
        safe_load_caption_pickle(str(evil))


def test_msvd_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="no MSVD annotation file found"):
        load_dataset(f"msvd:{tmp_path}")
    shutil.copy(FIX / "msvd" / "test_list.txt", tmp_path)
    with pytest.raises(ConfigError, match=str(tmp_path / "val_list.txt")):
        load_dataset(f"msvd:{tmp_path}:val")
    with pytest.raises(ConfigError, match="no MSVD caption file"):
        load_dataset(f"msvd:{tmp_path}:test")


def test_msvd_group_max_versus_standard_item_to_text():
    """Hand-computed: video A's best own caption (0.50) is beaten by all three captions of video B in column A.
    'standard' ranks A's caption among all texts -> rank 4; 'clip4clip' (group-max) ranks among videos, B's
    group counting once -> rank 2. Videos B and C are rank 1 under both."""
    ds = load_dataset(f"msvd:{FIX / 'msvd'}:test")
    np.testing.assert_array_equal(ds.text_to_item, [0, 0, 1, 1, 1, 2])
    sims = np.array(
        [  # columns: A, B, C
            [0.50, 0.40, 0.05],  # A caption 0
            [0.20, 0.10, 0.04],  # A caption 1
            [0.90, 0.60, 0.03],  # B caption 0
            [0.80, 0.30, 0.02],  # B caption 1
            [0.70, 0.20, 0.01],  # B caption 2
            [0.10, 0.00, 0.95],  # C caption 0
        ]
    )
    standard = evaluate_sims(sims, ds.text_to_item, "standard")["i2t"]
    grouped = evaluate_sims(sims, ds.text_to_item, "clip4clip")["i2t"]
    assert standard["MnR"] == pytest.approx((4 + 1 + 1) / 3)
    assert grouped["MnR"] == pytest.approx((2 + 1 + 1) / 3)
    assert standard["R@1"] == pytest.approx(200 / 3) and grouped["R@1"] == pytest.approx(200 / 3)


# ------------------------------------------------------------------------------------------------ DiDeMo


def test_didemo_paragraph_in_file_order_like_clip4clip():
    ds = load_dataset(f"didemo:{FIX / 'didemo'}:test")
    assert [it.id for it in ds.items] == [
        "1234567@N00_1111111111_aaaaaaaaaa.mov",
        "7654321@N01_2222222222_bbbbbbbbbb.mp4",
    ]  # test_list.txt drops 9999999@N09_... (in test_data.json, not in the list), as CLIP4Clip does
    # CLIP4Clip joins the descriptions in file order ("jumps" at 10 s, "walks in" at 0 s, "leaves" at 21.25 s)
    assert ds.texts == ["the man jumps a man walks in the man leaves", "a red car drives by"]
    assert ds.items[0].start is None and ds.items[0].end is None
    assert ds.media[0] == str(FIX / "didemo" / "videos" / "1234567@N00_1111111111_aaaaaaaaaa.mov")
    assert load_dataset(f"didemo:{FIX / 'didemo'}:test?ext=mp4").media[0].endswith("aaaaaaaaaa.mp4")
    everything = load_dataset(f"didemo:{FIX / 'didemo'}")  # val_data.json is absent: the others are read
    assert everything.splits == ["train", "test"] and len(everything) == 3


def test_didemo_without_or_with_extensionless_list(tmp_path):
    shutil.copy(FIX / "didemo" / "test_data.json", tmp_path)
    ds = load_dataset(f"didemo:{tmp_path}:test")  # no list: every video of the JSON
    assert [it.id for it in ds.items][-1] == "9999999@N09_4444444444_dddddddddd.mp4" and len(ds) == 3
    (tmp_path / "test_list.txt").write_text("9999999@N09_4444444444_dddddddddd\n\n")  # entry without extension
    ds = load_dataset(f"didemo:{tmp_path}:test")
    assert ds.texts == ["a bird lands on a branch"]
    (tmp_path / "test_list.txt").write_text("nothing_matches.mp4\n")
    with pytest.raises(ConfigError, match="no entry for the videos listed in"):
        load_dataset(f"didemo:{tmp_path}:test")


def test_didemo_moments_start_end():
    ds = load_dataset(f"didemo:{FIX / 'didemo'}:test?mode=moments")
    assert len(ds) == 4 and ds.texts[:2] == ["the man jumps", "a man walks in"]  # file order, listed videos
    assert [(it.start, it.end) for it in ds.items] == [(10.0, 16.25), (0.0, 5.0), (5.0, 11.25), (21.25, 28.75)]
    assert ds.items[0].id == "101"


def test_didemo_errors(tmp_path):
    with pytest.raises(ConfigError, match=str(FIX / "didemo" / "val_data.json")):
        load_dataset(f"didemo:{FIX / 'didemo'}:val")
    with pytest.raises(ConfigError, match="mode='clips'"):
        load_dataset(f"didemo:{FIX / 'didemo'}?mode=clips")
    with pytest.raises(ConfigError, match="DiDeMo folder not found"):
        load_dataset(f"didemo:{tmp_path / 'missing'}")
    (tmp_path / "test_data.json").write_text('[{"video": "v.mp4", "description": "x", "times": []}]')
    with pytest.raises(ConfigError, match="entry 0: 'times'"):
        load_dataset(f"didemo:{tmp_path}")


# ------------------------------------------------------------------------------------------- ActivityNet


def test_activitynet_paragraph_like_clip4clip():
    ds = load_dataset(f"activitynet:{FIX / 'activitynet'}:val_1")
    # val_ids.json order; v_DDDDDDDDDDD is listed but has no captions in val_1.json: skipped, as in CLIP4Clip
    assert [it.id for it in ds.items] == ["v_CCCCCCCCCCC", "v_BBBBBBBBBBB"]
    # " ".join(sentences) in file order (not re-sorted by timestamp), each sentence stripped
    assert ds.texts[1] == (
        "She then mixes the batter. A woman cracks eggs into a bowl. She pours the batter into a pan."
    )
    assert ds.items[1].start is None and ds.items[1].end is None
    # CLIP4Clip drops the "v_" of the key to find the video file
    assert ds.media == [str(FIX / "activitynet" / "videos" / f"{v}.mp4") for v in ("CCCCCCCCCCC", "BBBBBBBBBBB")]
    keep = load_dataset(f"activitynet:{FIX / 'activitynet'}:val_1?prefix=keep")
    assert keep.media[0] == str(FIX / "activitynet" / "videos" / "v_CCCCCCCCCCC.mp4")
    assert load_dataset(f"activitynet:{FIX / 'activitynet'}").splits == ["train", "val_1", "val_2"]
    assert [it.id for it in load_dataset(f"activitynet:{FIX / 'activitynet'}:val_2").items] == ["v_BBBBBBBBBBB"]


def test_activitynet_without_id_lists_keeps_file_order(tmp_path):
    shutil.copy(FIX / "activitynet" / "val_1.json", tmp_path)
    ds = load_dataset(f"activitynet:{tmp_path}:val_1")
    assert [it.id for it in ds.items] == ["v_BBBBBBBBBBB", "v_CCCCCCCCCCC"]
    (tmp_path / "val_ids.json").write_text('["v_NOPE"]')
    with pytest.raises(ConfigError, match="none of the videos listed in .*val_ids.json"):
        load_dataset(f"activitynet:{tmp_path}:val_1")
    (tmp_path / "val_ids.json").write_text('{"v_BBBBBBBBBBB": 1}')
    with pytest.raises(ConfigError, match="expected a JSON list"):
        load_dataset(f"activitynet:{tmp_path}:val_1")


def test_activitynet_moments():
    ds = load_dataset(f"activitynet:{FIX / 'activitynet'}:val_1?mode=moments&root=/an&ext=mkv")
    assert len(ds) == 4
    assert [(it.start, it.end) for it in ds.items] == [(1.0, 14.0), (20.1, 41.0), (0.5, 20.1), (40.0, 60.2)]
    assert ds.texts[1] == "She then mixes the batter."  # stripped
    assert ds.media[1] == "/an/BBBBBBBBBBB.mkv"
    assert [it.id for it in ds.items][:3] == ["v_CCCCCCCCCCC#0", "v_BBBBBBBBBBB#0", "v_BBBBBBBBBBB#1"]


def test_activitynet_errors(tmp_path):
    (tmp_path / "val_1.json").write_text('{"v_x": {"timestamps": [[5, 3]], "sentences": ["backwards"]}}')
    with pytest.raises(ConfigError, match="v_x, sentence 0: .*end"):
        load_dataset(f"activitynet:{tmp_path}?mode=moments")
    (tmp_path / "val_1.json").write_text('{"v_x": {"timestamps": [[1, 3]], "sentences": []}}')
    with pytest.raises(ConfigError, match="same length"):
        load_dataset(f"activitynet:{tmp_path}")
    with pytest.raises(ConfigError, match=str(tmp_path / "train.json")):
        load_dataset(f"activitynet:{tmp_path}:train")


# ------------------------------------------------------------------------------------------------- LSMDC


def test_lsmdc_clips_and_movie_folders():
    ds = load_dataset(f"lsmdc:{FIX / 'lsmdc'}:train")
    assert len(ds) == 2 and ds.num_texts == 3  # two rows of one clip merge
    assert ds.items[1].captions == ("SOMEONE looks at SOMEONE.", "She smiles.")
    clip = "0001_American_Beauty_00.00.51.926-00.00.54.129"
    assert ds.media[0] == str(FIX / "lsmdc" / "videos" / "0001_American_Beauty" / f"{clip}.avi")
    assert ds.items[0].id == clip and ds.items[0].start is None
    test = load_dataset(f"lsmdc:{FIX / 'lsmdc'}:test")
    assert test.texts == ["SOMEONE runs along the deck.", "A train speeds through the night."]
    assert load_dataset(f"lsmdc:{FIX / 'lsmdc'}").splits == ["train", "test"]
    with pytest.raises(ConfigError, match=str(FIX / "lsmdc" / "LSMDC16_annos_val.csv")):
        load_dataset(f"lsmdc:{FIX / 'lsmdc'}:val")


def test_lsmdc_flat_layout_and_stripped_lines(tmp_path):
    clip = "1010_TITANIC_00.41.32.072-00.41.40.196"
    ds = load_dataset(f"lsmdc:{FIX / 'lsmdc'}:test?layout=flat&root=/lsmdc&ext=mp4")
    assert ds.media[0] == f"/lsmdc/{clip}.mp4"
    (tmp_path / "LSMDC16_annos_val.csv").write_text(
        f"{clip}\t1\t2\t1\t2\tSOMEONE waves, then leaves.  \r\n"  # commas are text; the line is stripped
    )
    assert load_dataset(f"lsmdc:{tmp_path}:val").texts == ["SOMEONE waves, then leaves."]
    with pytest.raises(ConfigError, match="layout='tree'"):
        load_dataset(f"lsmdc:{tmp_path}?layout=tree")


def test_lsmdc_bad_row(tmp_path):
    (tmp_path / "LSMDC16_annos_training.csv").write_text("clip_only\tno sentence\n")
    with pytest.raises(ConfigError, match="line 1: expected 6 tab-separated columns"):
        load_dataset(f"lsmdc:{tmp_path}")


# ------------------------------------------------------------------------------------------------- VATEX


def test_vatex_clips_and_full_videos():
    ds = load_dataset(f"vatex:{FIX / 'vatex'}:train")
    assert [it.id for it in ds.items] == ["Ptf_2VRj-V0_000122_000132", "abcdEFGHijk_000010_000020"]
    assert ds.items[0].captions[0] == "A man shows how to tie a knot." and len(ds.items[0].captions) == 3
    assert ds.media[0] == str(FIX / "vatex" / "videos" / "Ptf_2VRj-V0_000122_000132.mp4")
    assert ds.items[0].start is None
    full = load_dataset(f"vatex:{FIX / 'vatex'}:train?videos=full")
    assert full.media[0] == str(FIX / "vatex" / "videos" / "Ptf_2VRj-V0.mp4")
    assert (full.items[0].start, full.items[0].end) == (122.0, 132.0)
    assert load_dataset(f"vatex:{FIX / 'vatex'}").splits == ["train", "val"]
    assert parse_video_id("a_b_000001_000011") == ("a_b", 1.0, 11.0)
    with pytest.raises(ConfigError, match="not <youtube id>"):
        parse_video_id("nodigits")
    with pytest.raises(ConfigError, match=str(FIX / "vatex" / "vatex_public_test_english_v1.1.json")):
        load_dataset(f"vatex:{FIX / 'vatex'}:public_test")


def test_vatex_hgr_list_split_like_clip2video(tmp_path):
    ds = load_dataset(f"vatex:{FIX / 'vatex'}:hgr-test")
    assert [it.id for it in ds.items] == ["zzzz-yyyyyy_000000_000010", "abcdEFGHijk_000010_000020"]  # list order
    assert ds.items[1].captions == ("Two kids play soccer in a yard.", "Children kick a ball outside.")
    assert ds.media[0] == str(FIX / "vatex" / "videos" / "zzzz-yyyyyy_000000_000010.mp4")
    assert [os.path.basename(p) for p in ds.source_files] == ["test_list.txt", "vatex_data.json"]
    assert load_dataset(f"vatex:{FIX / 'vatex'}").splits == ["train", "val"]  # lists only when asked for
    # TS2-Net's ref_captions.json, then the official files, as caption sources
    shutil.copy(FIX / "vatex" / "test_list.txt", tmp_path)
    (tmp_path / "ref_captions.json").write_text(
        json.dumps({"zzzz-yyyyyy_000000_000010": ["a"], "abcdEFGHijk_000010_000020": ["b", "c"]})
    )
    assert load_dataset(f"vatex:{tmp_path}:hgr-test").texts == ["a", "b", "c"]
    (tmp_path / "ref_captions.json").unlink()
    with pytest.raises(ConfigError, match="no VATEX caption file for the list splits"):
        load_dataset(f"vatex:{tmp_path}:hgr-test")
    for name in ("vatex_training_v1.0.json", "vatex_validation_v1.0.json"):
        shutil.copy(FIX / "vatex" / name, tmp_path)
    assert load_dataset(f"vatex:{tmp_path}:hgr-test").texts == load_dataset(f"vatex:{FIX / 'vatex'}:hgr-test").texts
    (tmp_path / "val_list.txt").write_text("Ptf_2VRj-V0_000122_000132\nnot_in_any_000001_000002\n")
    with pytest.raises(ConfigError, match=r"val_list.txt, line 2: videoID 'not_in_any_000001_000002' has no caption"):
        load_dataset(f"vatex:{tmp_path}:hgr-val")
    with pytest.raises(ConfigError, match="Available splits: train, val, public_test, hgr-train"):
        load_dataset(f"vatex:{tmp_path}:test")
    with pytest.raises(ConfigError, match=str(tmp_path / "train_list.txt")):
        load_dataset(f"vatex:{tmp_path}:hgr-train")


# ---------------------------------------------------------------------------------------------- YouCook2


def test_youcook2_one_item_per_segment():
    ds = load_dataset(f"youcook2:{FIX / 'youcook2'}")
    assert len(ds) == 3 and ds.splits == ["training", "validation"]
    assert [(it.start, it.end) for it in ds.items] == [(90.0, 102.0), (114.0, 127.0), (5.0, 20.0)]
    assert ds.items[0].id == "GLd3aX16zBg_0"
    assert ds.media[0] == str(FIX / "youcook2" / "raw_videos" / "training" / "113" / "GLd3aX16zBg.mp4")
    val = load_dataset(f"youcook2:{FIX / 'youcook2'}:validation?layout=flat&root=/yc")
    assert val.texts == ["cut the tomatoes into small pieces"] and val.media == ["/yc/xHr8X2Wpmno.mp4"]
    with pytest.raises(ConfigError, match="Available splits: training, validation"):
        load_dataset(f"youcook2:{FIX / 'youcook2'}:test")


def test_youcook2_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path / "youcookii_annotations_trainval.json")):
        load_dataset(f"youcook2:{tmp_path}")
