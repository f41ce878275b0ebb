"""xmr.data: every loader on its fixture, caption policies, spec parsing and error messages."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from xmr.data import (
    DATASETS,
    Item,
    RetrievalDataset,
    list_datasets,
    load_dataset,
    parse_dataset_spec,
    write_manifest,
)
from xmr.data.base import apply_caption_policy, normalize_caption_policy, parse_caption_policy
from xmr.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
COCO_TINY = FIXTURES / "coco_tiny"
KARPATHY_TINY = FIXTURES / "karpathy_tiny"
CSV_TINY = FIXTURES / "csv_tiny"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO_MINI = SHARED_DATA / "coco-mini"


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- core types


def test_registry_lists_every_loader():
    assert [name for name, _ in list_datasets()] == ["activitynet", "coco", "csv", "didemo", "karpathy", "lsmdc", "manifest", "msrvtt", "msvd", "multi30k", "parquet", "tvr", "vatex", "wds", "xtd", "youcook2"]
    assert all(help_ for _, help_ in list_datasets())
    assert "coco" in DATASETS


def test_flat_views_follow_item_order(tmp_path):
    ds = RetrievalDataset(
        "toy",
        (Item(str(tmp_path / "a.jpg"), ["a1", "a2"]), Item(str(tmp_path / "b.jpg"), ("b1",)),
         Item(str(tmp_path / "c.jpg"), ["c1", "c2", "c3"])),
    )
    assert ds.texts == ["a1", "a2", "b1", "c1", "c2", "c3"]
    assert ds.text_to_item.dtype == np.int64
    np.testing.assert_array_equal(ds.text_to_item, [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(ds.text_offsets, [0, 2, 3, 6])
    assert ds.media == [str(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg")]
    assert len(ds) == 3 and ds.num_texts == 6
    assert isinstance(ds.items[0].captions, tuple)
    with pytest.raises(ValueError):
        ds.text_to_item[0] = 5  # read-only: the evaluator's ground truth cannot be changed by accident
    ds.texts.append("x")  # a fresh list each time: mutating it does not touch the dataset
    assert ds.num_texts == 6
    assert "items=3" in repr(ds) and "texts=6" in repr(ds)


def test_item_validation(tmp_path):
    assert Item("rel/a.jpg", ["x"]).media == os.path.abspath("rel/a.jpg")
    with pytest.raises(ConfigError, match="non-empty"):
        Item("a.jpg", ["ok", "  "])
    with pytest.raises(ConfigError, match="after start"):
        Item("v.mp4", ["x"], start=5, end=2)
    with pytest.raises(ConfigError, match="no captions"):
        RetrievalDataset("d", (Item("a.jpg", []),))
    with pytest.raises(ConfigError, match="no items"):
        RetrievalDataset("d", ())


@pytest.mark.parametrize(
    "policy, n, canon", [("all", None, "all"), ("first", 1, "first"), ("first1", 1, "first"), ("First5", 5, "first5")]
)
def test_caption_policy_parsing(policy, n, canon):
    assert parse_caption_policy(policy) == n
    assert normalize_caption_policy(policy) == canon


@pytest.mark.parametrize("bad", ["", "some", "first0", "last5", "first-2", "5"])
def test_bad_caption_policy_says_what_is_valid(bad):
    with pytest.raises(ConfigError, match="firstN"):
        parse_caption_policy(bad)


def test_apply_caption_policy_keeps_short_items_whole():
    assert apply_caption_policy(["a", "b", "c"], "first2") == ("a", "b")
    assert apply_caption_policy(["a"], "first5") == ("a",)
    assert apply_caption_policy(["a", "b"], "all") == ("a", "b")


def test_subset_keeps_first_items_and_marks_spec():
    ds = load_dataset(f"coco:{COCO_TINY}")
    sub = ds.subset(2)
    assert sub.items == ds.items[:2]
    assert sub.spec == f"coco:{COCO_TINY}?limit=2"
    assert load_dataset(sub.spec) == sub
    assert ds.subset(100) is ds
    with pytest.raises(ConfigError):
        ds.subset(0)


# ------------------------------------------------------------------------------------------------- coco

VAL_IDS = ["126107", "165518", "551780"]


def test_coco_all_splits_ordered_by_split_then_image_id():
    ds = load_dataset(f"coco:{COCO_TINY}")
    assert [it.split for it in ds.items] == ["train2017", "val2017", "val2017", "val2017"]
    assert [it.id for it in ds.items] == ["525891", *VAL_IDS]
    assert len(ds) == 4 and ds.num_texts == 20
    np.testing.assert_array_equal(ds.text_to_item, np.repeat(np.arange(4), 5))
    assert ds.media[1] == str(COCO_TINY / "val2017" / "000000126107.jpg")
    assert ds.check_media() == []
    assert ds.source_files == (
        str(COCO_TINY / "annotations" / "captions_train2017.json"),
        str(COCO_TINY / "annotations" / "captions_val2017.json"),
    )
    assert ds.name == "coco:coco_tiny" and ds.caption_policy == "all"


def test_coco_excludes_uncaptioned_images():
    ds = load_dataset(f"coco:{COCO_TINY}:val2017")
    assert [it.id for it in ds.items] == VAL_IDS  # 229358 is listed in the JSON without captions
    assert ds.source_files == (str(COCO_TINY / "annotations" / "captions_val2017.json"),)


def test_coco_captions_sorted_by_annotation_id_and_stripped():
    # the fixture lists annotations shuffled; ids 546685 < 556402 < 556732 < 556801 < 557179 for image 551780
    item = load_dataset(f"coco:{COCO_TINY}:val2017").items[2]
    assert item.captions == (
        "A large clock mounted to the side of a building.",
        "A analogue clock is places next to a sign.",
        "a big clock sits on the side of a building",
        "A clock  and a spoon atop a commercial building.",
        "A clock on a building that says 8:25.",
    )
    first2 = load_dataset(f"coco:{COCO_TINY}:val2017", captions="first2")
    assert first2.items[2].captions == item.captions[:2]
    assert first2.num_texts == 6 and first2.caption_policy == "first2"
    first = load_dataset(f"coco:{COCO_TINY}:val2017", captions="first")
    assert first.texts[0] == "A bird that is flying over the sand."


@pytest.mark.parametrize(
    "spec, kwargs",
    [
        (f"coco:{COCO_TINY}:val2017", {}),
        (f"coco:{COCO_TINY}?split=val2017", {}),
        (f"coco:{COCO_TINY}", {"split": "val2017"}),
        (f"coco:{COCO_TINY}:val2017", {"split": "val2017"}),
    ],
)
def test_coco_split_forms_agree(spec, kwargs):
    ds = load_dataset(spec, **kwargs)
    assert [it.id for it in ds.items] == VAL_IDS
    assert ds.spec == f"coco:{COCO_TINY}?split=val2017"
    assert ds.name == "coco:coco_tiny/val2017"


def test_coco_split_errors():
    with pytest.raises(ConfigError, match=r"'val2014'.*Available splits: train2017, val2017"):
        load_dataset(f"coco:{COCO_TINY}:val2014")
    with pytest.raises(ConfigError, match="split"):
        load_dataset(f"coco:{COCO_TINY}:val2017", split="train2017")
    both = load_dataset(f"coco:{COCO_TINY}?split=val2017+train2017")
    assert [it.split for it in both.items] == ["train2017"] + ["val2017"] * 3


def test_coco_missing_folder_and_annotations(tmp_path):
    with pytest.raises(ConfigError, match=f"COCO folder not found: {tmp_path / 'nope'}"):
        load_dataset(f"coco:{tmp_path / 'nope'}")
    with pytest.raises(ConfigError, match=r"no COCO caption files in .*annotations"):
        load_dataset(f"coco:{tmp_path}")


def test_coco_root_option_and_bad_json(tmp_path):
    ds = load_dataset(f"coco:{COCO_TINY}:val2017?root={tmp_path}")
    assert ds.media[0] == str(tmp_path / "val2017" / "000000126107.jpg")
    assert len(ds.check_media()) == 3
    with pytest.raises(ConfigError, match="3 of 3 media files"):
        load_dataset(f"coco:{COCO_TINY}:val2017?root={tmp_path}", check_media=True)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_x.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"captions_x\.json: not valid JSON"):
        load_dataset(f"coco:{tmp_path}")


@pytest.mark.skipif(not COCO_MINI.is_dir(), reason=f"shared COCO-MINI data not present at {COCO_MINI}")
def test_coco_mini_real_counts():
    ds = load_dataset(f"coco:{COCO_MINI}")
    assert (len(ds), ds.num_texts) == (159, 795)
    assert ds.splits == ["train2017", "val2017"]
    val = load_dataset(f"coco:{COCO_MINI}:val2017")
    assert (len(val), val.num_texts) == (79, 395)  # the 80 uncaptioned val images are not in the gallery
    assert load_dataset(f"coco:{COCO_MINI}:train2017").num_texts == 400
    assert load_dataset(f"coco:{COCO_MINI}", captions="first").num_texts == 159
    assert val.check_media() == []


# --------------------------------------------------------------------------------------------- karpathy


def test_karpathy_coco_layout_all_splits_in_file_order():
    ds = load_dataset(f"karpathy:{KARPATHY_TINY / 'dataset_coco.json'}")
    assert [it.split for it in ds.items] == ["test", "train", "val", "restval", "test"]
    assert [it.id for it in ds.items] == ["900001", "900002", "900003", "900004", "900005"]
    assert ds.media[0] == str(KARPATHY_TINY / "val2014" / "fixture_test_a.jpg")  # <root>/<filepath>/<filename>
    assert ds.items[0].captions[1] == "A red square."  # raw, stripped
    assert ds.items[4].captions[1] == "a black cross"  # no raw: tokens joined
    assert ds.num_texts == 14 and ds.name == "karpathy:coco"


def test_karpathy_split_and_first5():
    path = KARPATHY_TINY / "dataset_coco.json"
    test = load_dataset(f"karpathy:{path}:test")
    assert [it.id for it in test.items] == ["900001", "900005"] and test.num_texts == 9
    five = load_dataset(f"karpathy:{path}", split="test", captions="first5")
    assert [len(it.captions) for it in five.items] == [5, 3]
    np.testing.assert_array_equal(five.text_to_item, [0] * 5 + [1] * 3)
    assert five.spec == f"karpathy:{path}?split=test&captions=first5"
    train = load_dataset(f"karpathy:{path}:train+restval")
    assert [it.split for it in train.items] == ["train", "restval"]
    with pytest.raises(ConfigError, match="Available splits: test, train, val, restval"):
        load_dataset(f"karpathy:{path}:testing")


def test_karpathy_bare_path_is_detected():
    ds = load_dataset(f"{KARPATHY_TINY / 'dataset_coco.json'}:val")
    assert ds.spec.startswith("karpathy:") and len(ds) == 1


def test_karpathy_flickr_image_folder(tmp_path):
    src = KARPATHY_TINY / "dataset_flickr30k.json"
    ds = load_dataset(f"karpathy:{src}")
    assert ds.media[0] == str(KARPATHY_TINY / "fixture_1.jpg")  # no flickr30k-images/ folder: the root itself
    assert ds.name == "karpathy:flickr30k"
    shutil.copy(src, tmp_path / src.name)
    (tmp_path / "flickr30k-images").mkdir()
    ds = load_dataset(f"karpathy:{tmp_path / src.name}:test")
    assert ds.media == [str(tmp_path / "flickr30k-images" / "fixture_2.jpg")]
    other = tmp_path / "imgs"
    ds = load_dataset(f"karpathy:{tmp_path / src.name}:test?root={other}")
    assert ds.media == [str(other / "fixture_2.jpg")]


def test_karpathy_errors(tmp_path):
    with pytest.raises(ConfigError, match=f"Karpathy split file not found: {tmp_path / 'dataset_coco.json'}"):
        load_dataset(f"karpathy:{tmp_path / 'dataset_coco.json'}")
    bad = tmp_path / "dataset_x.json"
    bad.write_text(json.dumps({"annotations": []}))
    with pytest.raises(ConfigError, match="not a Karpathy split file"):
        load_dataset(f"karpathy:{bad}")
    bad.write_text(json.dumps({"images": [{"filename": "a.jpg", "split": "test", "sentences": [{"raw": " "}]}]}))
    with pytest.raises(ConfigError, match=r"images\[0\]: a sentence needs"):
        load_dataset(f"karpathy:{bad}")


# -------------------------------------------------------------------------------------------------- csv


def test_csv_groups_rows_per_image():
    ds = load_dataset(f"csv:{CSV_TINY}")
    assert ds.media == [str(CSV_TINY / "images" / n) for n in ("red.png", "green.png", "blue.png")]
    assert ds.items[0].captions == ("a red square", "a square, coloured red")
    assert ds.items[1].captions == ("a green square", "a plain green tile")
    assert [it.split for it in ds.items] == ["test", "test", "train"]
    np.testing.assert_array_equal(ds.text_to_item, [0, 0, 1, 1, 2])
    assert ds.check_media() == []
    assert ds.source_files == (str(CSV_TINY / "captions.csv"),)
    assert load_dataset(f"csv:{CSV_TINY / 'captions.csv'}").items == ds.items
    assert load_dataset(str(CSV_TINY / "captions.csv")).items == ds.items  # bare .csv path
    test = load_dataset(f"csv:{CSV_TINY}:test", captions="first")
    assert test.texts == ["a red square", "a green square"]


def test_csv_errors_name_line(tmp_path):
    with pytest.raises(ConfigError, match=f"no captions.csv in {tmp_path}"):
        load_dataset(f"csv:{tmp_path}")
    (tmp_path / "other.csv").write_text("file,text\na.png,x\n")
    with pytest.raises(ConfigError, match="Found other.csv"):
        load_dataset(f"csv:{tmp_path}")
    ds = load_dataset(f"csv:{tmp_path / 'other.csv'}")
    assert ds.media == [str(tmp_path / "a.png")] and ds.name == "csv:" + tmp_path.name + "/other.csv"
    (tmp_path / "captions.csv").write_text("image,caption\na.png,x\n\nb.png,\n")
    with pytest.raises(ConfigError, match=r"captions.csv, line 4: empty 'caption'"):
        load_dataset(f"csv:{tmp_path}")
    (tmp_path / "captions.csv").write_text("picture,caption\na.png,x\n")
    with pytest.raises(ConfigError, match=r"line 1: no media column .*image, path, file"):
        load_dataset(f"csv:{tmp_path}")
    (tmp_path / "captions.csv").write_text("image,caption,split\na.png,x,train\na.png,y,test\n")
    with pytest.raises(ConfigError, match=r"line 3: split 'test' differs from 'train' .* line 2"):
        load_dataset(f"csv:{tmp_path}")


# --------------------------------------------------------------------------------------------- manifest


def test_manifest_keys_paths_and_grouping(tmp_path):
    abs_img = COCO_TINY / "val2017" / "000000126107.jpg"
    m = _write_jsonl(
        tmp_path / "eval.jsonl",
        [
            {"media": "imgs/a.jpg", "captions": ["a one", "a two"], "split": "test", "id": "a"},
            {"image": str(abs_img), "caption": "a bird"},
            "",
            {"path": "imgs/a.jpg", "caption": "a three"},
            {"video": "v.mp4", "caption": "moment 1", "start": 1, "end": 2.5},
            {"video": "v.mp4", "caption": "moment 2", "start": 3, "end": 4},
        ],
    )
    ds = load_dataset(f"manifest:{m}")
    video = str(tmp_path / "v.mp4")
    assert ds.media == [str(tmp_path / "imgs" / "a.jpg"), str(abs_img), video, video]
    assert ds.items[0].captions == ("a one", "a two", "a three")
    assert (ds.items[0].split, ds.items[0].id) == ("test", "a")
    assert (ds.items[2].start, ds.items[2].end) == (1.0, 2.5) and ds.items[3].start == 3.0
    np.testing.assert_array_equal(ds.text_to_item, [0, 0, 0, 1, 2, 3])
    assert ds.check_media() == [str(tmp_path / "imgs" / "a.jpg"), str(tmp_path / "v.mp4")]
    assert load_dataset(str(m)).items == ds.items  # bare .jsonl path
    assert load_dataset(f"{m}:test").texts == ["a one", "a two", "a three"]
    rooted = load_dataset(f"manifest:{m}?root={COCO_TINY}")
    assert rooted.media[0] == str(COCO_TINY / "imgs" / "a.jpg")


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", r"line 2: not valid JSON"),
        ('["a.jpg"]', r"line 2: expected a JSON object"),
        ('{"caption": "x"}', r"line 2: no media key"),
        ('{"image": "a.jpg", "path": "b.jpg", "caption": "x"}', r"line 2: several media keys"),
        ('{"image": "a.jpg"}', r"line 2: no 'captions'"),
        ('{"image": "a.jpg", "captions": []}', r"line 2: 'captions' is empty"),
        ('{"image": "a.jpg", "captions": "x"}', r"line 2: 'captions' must be a list"),
        ('{"image": "a.jpg", "caption": "x", "captions": ["y"]}', r"line 2: has both"),
        ('{"image": "a.jpg", "caption": ""}', r"line 2: captions must be non-empty"),
        ('{"video": "v.mp4", "caption": "x", "start": "1s"}', r"line 2: 'start' must be a number"),
        ('{"video": "v.mp4", "caption": "x", "start": 3, "end": 1}', r"line 2: .*end \(1.0\) must be after start"),
        ('{"image": "ok.jpg", "caption": "y", "split": "val"}', r"line 2: split 'val' differs from 'train'.*line 1"),
    ],
)
def test_manifest_errors_name_the_line(tmp_path, line, message):
    m = _write_jsonl(tmp_path / "m.jsonl", ['{"image": "ok.jpg", "caption": "fine", "split": "train"}', line])
    with pytest.raises(ConfigError, match=message):
        load_dataset(f"manifest:{m}")


def test_manifest_missing_file_and_empty(tmp_path):
    with pytest.raises(ConfigError, match=f"manifest file not found: {tmp_path / 'x.jsonl'}"):
        load_dataset(str(tmp_path / "x.jsonl"))
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(ConfigError, match="no items"):
        load_dataset(f"manifest:{tmp_path / 'e.jsonl'}")
    _write_jsonl(tmp_path / "s.jsonl", [{"image": "a.jpg", "caption": "x"}])
    with pytest.raises(ConfigError, match="no split information"):
        load_dataset(f"manifest:{tmp_path / 's.jsonl'}", split="test")


def test_write_manifest_round_trip(tmp_path):
    ds = load_dataset(f"coco:{COCO_TINY}", captions="first2")
    out = write_manifest(ds, tmp_path / "sub" / "coco.jsonl")
    back = load_dataset(f"manifest:{out}")
    assert back.items == ds.items and back.caption_policy == "all"
    first = json.loads(Path(out).read_text().splitlines()[0])
    assert first["media"] == str(COCO_TINY / "train2017" / "000000525891.jpg")  # outside the folder: absolute
    assert first["split"] == "train2017" and first["id"] == "525891"
    # media under the manifest's folder are written relative, so the folder can move
    local = RetrievalDataset("l", (Item(str(tmp_path / "i" / "a.jpg"), ["x"], start=1.5, end=2.0),))
    out = write_manifest(local, tmp_path / "local.jsonl")
    assert json.loads(Path(out).read_text()) == {"media": "i/a.jpg", "captions": ["x"], "start": 1.5, "end": 2.0}
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(out, moved / "local.jsonl")
    assert load_dataset(str(moved / "local.jsonl")).media == [str(moved / "i" / "a.jpg")]


# ------------------------------------------------------------------------------------------ spec parsing


def test_unknown_scheme_lists_available():
    available = r"Available: activitynet, coco, csv, didemo, karpathy, lsmdc, manifest, msrvtt, msvd, multi30k, parquet, tvr, vatex, wds, xtd, youcook2"
    with pytest.raises(ConfigError, match=r"unknown dataset scheme 'imagenet'.*" + available):
        load_dataset("imagenet:/data")
    with pytest.raises(ConfigError, match=r"no dataset scheme in '/data/folder'.*Available: activitynet, coco"):
        load_dataset("/data/folder")
    with pytest.raises(ConfigError, match="empty dataset spec"):
        load_dataset("  ")


def test_spec_options_are_checked():
    valid = "Valid options: split, captions, limit, root"
    with pytest.raises(ConfigError, match=r"unknown option\(s\) fps for coco.*" + valid):
        load_dataset(f"coco:{COCO_TINY}?fps=2")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_dataset(f"coco:{COCO_TINY}?split")
    with pytest.raises(ConfigError, match="limit"):
        load_dataset(f"coco:{COCO_TINY}?limit=-1")
    with pytest.raises(ConfigError, match="captions"):
        load_dataset(f"coco:{COCO_TINY}?captions=first5", captions="all")
    with pytest.raises(ConfigError, match="give one"):
        parse_dataset_spec(f"coco:{COCO_TINY}:val2017?split=train2017")


def test_canonical_spec_round_trips(monkeypatch):
    monkeypatch.chdir(FIXTURES)
    ds = load_dataset("coco:coco_tiny?captions=FIRST2&limit=2&split=val2017")
    assert ds.spec == f"coco:{COCO_TINY}?split=val2017&captions=first2&limit=2"
    assert len(ds) == 2 and ds.num_texts == 4
    monkeypatch.chdir(KARPATHY_TINY)
    assert load_dataset(ds.spec) == ds


def test_parse_dataset_spec_forms():
    assert parse_dataset_spec("coco:/d:val2017?captions=first5") == (
        "coco", "/d", {"captions": "first5", "split": "val2017"}
    )
    assert parse_dataset_spec("/x/eval.jsonl:test") == ("manifest", "/x/eval.jsonl", {"split": "test"})
    assert parse_dataset_spec("/x/t.tsv") == ("csv", "/x/t.tsv", {})
    assert parse_dataset_spec("karpathy:C:\\data\\dataset_coco.json") == ("karpathy", "C:\\data\\dataset_coco.json", {})
