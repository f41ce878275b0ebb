"""Whole-clip video models (``Capabilities.clips``: ``trained:DIR`` of ``xmr train --mode full`` on videos, here a
1-epoch MILES run on ``xmr synth videos`` clips) in ``xmr eval``, ``xmr index``, ``xmr search`` and ``xmr info``:
the same scores as the run's own evaluation and as a direct computation, moment windows, one vector per indexed
video and no segments (``--type moment`` refused), images refused / skipped with the reason, bad files reported
without losing the good ones."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import xmr

from conftest import run_cli
from test_miles import TINY, videos  # noqa: F401  (the synthetic clips fixture of the MILES tests)
from xmr.errors import ConfigError, MediaError


@pytest.fixture(scope="module")
def run_dir(videos, tmp_path_factory):  # noqa: F811
    from xmr.train import TrainConfig, train

    cfg = TrainConfig(dataset=f"manifest:{videos}", model="tiny", mode="full", loss="miles", epochs=1, batch_size=4,
                      lr=5e-3, frames=2, tiny=dict(TINY))
    return train(cfg, tmp_path_factory.mktemp("clipvid") / "run", show_progress=False).out


def _metrics_row(run_dir) -> dict:
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    head = rows[0].split(",")
    return dict(zip(head, rows[-1].split(",")))


def _direct(enc, media, spans=None) -> np.ndarray:
    """Vectors computed without xmr.video: sample_frames at the TSN centres, the model's preprocessing, the net."""
    from xmr.media.video import sample_frames

    out = []
    for i, p in enumerate(media):
        s, e = spans[i] if spans else (None, None)
        arr = sample_frames(p, enc.clip_frames, start=s, end=e)
        x = torch.from_numpy(np.stack([enc.preprocess(Image.fromarray(a)) for a in arr]))
        with torch.no_grad():
            out.append(F.normalize(enc.model.encode_video(x[None]), dim=-1)[0].numpy())
    return np.stack(out)


def test_xmr_eval_of_a_trained_video_model_gives_the_runs_own_scores(videos, run_dir, capsys):  # noqa: F811
    code, out, err = run_cli(capsys, "eval", "--model", f"trained:{run_dir}", "--dataset", f"manifest:{videos}",
                             "--split", "test", "--json")
    assert code == 0, err
    res = json.loads(out)
    row = _metrics_row(run_dir)
    assert row["epoch"] == "1"
    compared = 0
    for d in ("t2i", "i2t"):
        for m, v in res[d].items():
            if f"{d}_{m}" in row:
                assert v == pytest.approx(float(row[f"{d}_{m}"]), abs=1e-3), (d, m)
                compared += 1
    assert compared >= 6
    fp = res["fingerprint"]["video"]
    assert fp["clips"]["frames"] == 2 and "none" in fp["clips"]["segments"]
    # and the same as encode_videos (the training path) and a direct computation, vector for vector
    from xmr.data import load_dataset
    from xmr.encoders import create_encoder
    from xmr.eval import evaluate_sims
    from xmr.eval.runner import _encode_clip_videos

    enc = create_encoder(f"trained:{run_dir}")
    ds = load_dataset(f"manifest:{videos}", split="test")
    bad: list[str] = []
    gal = _encode_clip_videos(ds, enc, bad, False).vectors
    assert not bad
    np.testing.assert_allclose(gal, enc.encode_videos(list(ds.media)), atol=1e-6)
    np.testing.assert_allclose(gal, _direct(enc, ds.media), atol=1e-6)
    m = evaluate_sims(enc.encode_text(ds.texts) @ gal.T, np.asarray(ds.text_to_item), protocol="standard")
    assert m["t2i"] == pytest.approx(res["t2i"], abs=1e-6)


def test_eval_moment_windows_embed_each_window_as_a_clip(videos, run_dir, tmp_path, capsys):  # noqa: F811
    rows = [json.loads(x) for x in videos.read_text().splitlines()][:3]
    spans = [(0.0, 0.5), (0.5, 1.0), (0.25, 0.75)]
    lines = [json.dumps({"media": str(videos.parent / r["media"]), "captions": r["captions"][:1], "start": s,
                         "end": e}) for r, (s, e) in zip(rows, spans)]
    man = tmp_path / "moments.jsonl"
    man.write_text("\n".join(lines) + "\n")
    from xmr.data import load_dataset
    from xmr.encoders import create_encoder
    from xmr.eval.runner import _encode_clip_videos

    enc = create_encoder(f"trained:{run_dir}")
    ds = load_dataset(f"manifest:{man}")
    bad: list[str] = []
    gal = _encode_clip_videos(ds, enc, bad, False).vectors
    np.testing.assert_allclose(gal, _direct(enc, ds.media, [(it.start, it.end) for it in ds.items]), atol=1e-6)
    # a window is not the whole clip it is cut from (other frames; a 1-epoch model barely tells them apart)
    assert np.abs(gal[0] - enc.encode_videos([ds.media[0]])[0]).max() > 1e-5
    code, out, err = run_cli(capsys, "eval", "--model", f"trained:{run_dir}", "--dataset", f"manifest:{man}", "--json")
    assert code == 0, err
    assert json.loads(out)["fingerprint"]["num_gallery_items"] == 3
    # a frame count the model was not trained on, a window outside the clip
    code, _, err = run_cli(capsys, "eval", "--model", f"trained:{run_dir}", "--dataset", f"manifest:{man}",
                           "--frames", "5")
    assert code == 2 and "clips of 2 frames" in err and "--frames" in err
    man.write_text(lines[0] + "\n" + json.dumps({"media": str(videos.parent / rows[1]["media"]), "captions": ["x"],
                                                 "start": 5.0, "end": 6.0}) + "\n")
    code, _, err = run_cli(capsys, "eval", "--model", f"trained:{run_dir}", "--dataset", f"manifest:{man}")
    assert code == 2 and rows[1]["media"].split("/")[-1] in err and "[5.0-6.0 s]" in err


def test_eval_refuses_images_and_names_a_corrupt_video(videos, run_dir, tmp_path, capsys):  # noqa: F811
    from xmr.data import load_dataset
    from xmr.encoders import create_encoder
    from xmr.eval import evaluate_model

    enc = create_encoder(f"trained:{run_dir}")
    with pytest.raises(ConfigError, match="embeds whole video clips .* not images"):
        enc.encode_images([Image.new("RGB", (16, 16))])
    from conftest import FIXTURES

    code, _, err = run_cli(capsys, "eval", "--model", f"trained:{run_dir}", "--dataset",
                           f"coco:{FIXTURES / 'coco_tiny'}:val2017")
    assert code == 2 and "embeds whole video clips" in err and "not images" in err
    rows = [json.loads(x) for x in videos.read_text().splitlines()][:3]
    (tmp_path / "videos").mkdir()
    for i, r in enumerate(rows):
        data = (videos.parent / r["media"]).read_bytes()
        (tmp_path / r["media"]).write_bytes(data[: len(data) // 3] if i == 2 else data)
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"media": r["media"], "captions": r["captions"]})
                                                for r in rows) + "\n")
    with pytest.raises(MediaError) as e:
        evaluate_model(load_dataset(f"manifest:{tmp_path / 'c.jsonl'}"), enc, show_progress=False)
    assert "1 gallery file(s) cannot be decoded" in str(e.value) and rows[2]["media"].split("/")[-1] in str(e.value)


def test_index_search_and_info_with_a_trained_video_model(videos, run_dir, tmp_path, capsys):  # noqa: F811
    from xmr.encoders import create_encoder
    from xmr.index.store import IndexStore

    folder = tmp_path / "clips"
    folder.mkdir()
    media = sorted((videos.parent / "videos").glob("*.mp4"))[:5]
    for p in media:
        shutil.copy(p, folder / p.name)
    data = media[4].read_bytes()
    (folder / media[4].name).write_bytes(data[: len(data) // 3])  # a corrupt clip
    samples = Path(xmr.__file__).parent / "assets" / "samples"
    shutil.copy(sorted(samples.glob("*.png"))[0], folder / "photo.png")
    idx = tmp_path / "idx"
    # frame-grid settings it would not use are refused before anything is written
    code, _, err = run_cli(capsys, "index", str(folder), "--index", str(idx), "--model", f"trained:{run_dir}",
                           "--video-fps", "2")
    assert code == 2 and "not on a frame grid: drop" in err and not idx.exists()
    code, out, err = run_cli(capsys, "index", str(folder), "--index", str(idx), "--model", f"trained:{run_dir}",
                             "--json")
    assert code == 0, err
    rep = json.loads(out)
    skipped = {s["path"].split("/")[-1]: s["reason"] for s in rep["skipped"]}
    assert rep["added"] == 4 and set(skipped) == {media[4].name, "photo.png"}
    assert "embeds whole video clips, not images" in skipped["photo.png"]
    enc = create_encoder(f"trained:{run_dir}")
    with IndexStore(idx, readonly=True) as st:
        # 1 s clips, default 4 s windows: one window per video, the whole clip
        assert st.count() == 4 and st.count_segments() == 4 and st.media_counts() == {"video": 4}
        items = st.items_under(rep["root"])
        rec = next(r for p, r in items.items() if p.endswith(media[0].name))
        vec = st.item_vectors([rec.id])[0]
    np.testing.assert_allclose(vec, enc.encode_videos([str(media[0])])[0], atol=1e-5)  # the clip's own vector
    # a text query ranks the videos by the model's own scores
    q = json.loads((videos).read_text().splitlines()[0])
    code, out, err = run_cli(capsys, "search", q["captions"][0], "--index", str(idx), "--type", "video", "--k", "4",
                             "--json")
    assert code == 0, err
    res = json.loads(out)["results"]
    assert len(res) == 4 and all(r["media_type"] == "video" for r in res)
    good = [str(folder / p.name) for p in media[:4]]
    want = enc.encode_videos(good) @ enc.encode_text([q["captions"][0]])[0]
    order = [good[i].split("/")[-1] for i in np.argsort(-want, kind="stable")]
    assert [r["path"].split("/")[-1] for r in res] == order
    assert [r["score"] for r in res] == pytest.approx(sorted(want, reverse=True), abs=1e-4)
    code, out, _ = run_cli(capsys, "info", "--index", str(idx))
    assert code == 0 and "embedded as one clip" in out and "segments 4 s every 2 s, each embedded as a clip" in out
    # a second run re-reads nothing and loses nothing
    code, out, err = run_cli(capsys, "index", str(folder), "--index", str(idx), "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["unchanged"] == 4 and again["total"] == 4 and len(again["skipped"]) == 2


def _window_clips(folder, run_dir, tmp_path, capsys, n=3):
    """An index of ``n`` synthetic 1 s clips with 0.5 s windows every 0.25 s (3 windows each)."""
    idx = tmp_path / "widx"
    code, out, err = run_cli(capsys, "index", str(folder), "--index", str(idx), "--model", f"trained:{run_dir}",
                             "--segment", "0.5", "--segment-stride", "0.25", "--json")
    assert code == 0, err
    return idx, json.loads(out)


@pytest.fixture
def clip_folder(videos, tmp_path):  # noqa: F811
    folder = tmp_path / "clips"
    folder.mkdir()
    media = sorted((videos.parent / "videos").glob("*.mp4"))[:3]
    for p in media:
        shutil.copy(p, folder / p.name)
    return folder, [folder / p.name for p in media]


def test_index_embeds_each_window_as_a_clip_and_moment_search_ranks_them(videos, run_dir, clip_folder,  # noqa: F811
                                                                         tmp_path, capsys):
    from xmr.encoders import create_encoder
    from xmr.index.store import IndexStore

    folder, media = clip_folder
    idx, rep = _window_clips(folder, run_dir, tmp_path, capsys)
    assert rep["added"] == 3 and not rep["skipped"]
    enc = create_encoder(f"trained:{run_dir}")
    direct = {}  # (file name, start, end) -> the window read alone (sample_frames) through the net
    with IndexStore(idx, readonly=True) as st:
        assert st.count_segments() == 9
        for path, rec in st.items_under(rep["root"]).items():
            segs, vecs = st.segments_of(rec.id)
            assert [(s.start, s.end) for s in segs] == [(0.0, 0.5), (0.25, 0.75), (0.5, 1.0)]
            want = _direct(enc, [path] * 3, [(s.start, s.end) for s in segs])
            np.testing.assert_allclose(vecs, want, atol=1e-5)
            np.testing.assert_allclose(st.item_vectors([rec.id])[0], _direct(enc, [path])[0], atol=1e-5)
            for s, w in zip(segs, want):
                direct[(Path(path).name, s.start, s.end)] = w
    q = json.loads(videos.read_text().splitlines()[0])["captions"][0]
    t = enc.encode_text([q])[0]
    top_score = max(float(v @ t) for v in direct.values())
    # the best window(s): identical frames give identical windows, so ties are allowed
    best = {key for key, v in direct.items() if float(v @ t) > top_score - 1e-6}
    assert len(best) < len(direct)
    code, out, err = run_cli(capsys, "search", q, "--index", str(idx), "--type", "moment", "--k", "3", "--json")
    assert code == 0, err
    top = json.loads(out)["results"][0]
    # the best window, its boundaries refined by the proposals localiser (as for frame models' segments)
    assert any(Path(top["path"]).name == n and s <= top["start"] < top["end"] <= e for n, s, e in best), (top, best)
    assert top["score"] == pytest.approx(top_score, abs=1e-4)
    # --type video: the whole-video vector stays the item's vector; a video scores max(whole video, best window),
    # the rule of frame models' indexes (the moments stage), and carries that window
    code, out, err = run_cli(capsys, "search", q, "--index", str(idx), "--type", "video", "--k", "3", "--json")
    assert code == 0, err
    res = json.loads(out)["results"]
    want = {Path(p).name: max([float(_direct(enc, [p])[0] @ t)]
                              + [float(v @ t) for (n, _, _), v in direct.items() if n == Path(p).name])
            for p in media}
    assert {Path(r["path"]).name: r["score"] for r in res} == pytest.approx(want, abs=1e-4)
    with IndexStore(idx, readonly=True) as st:  # the item vectors are the whole videos' clips
        vecs = {Path(p).name: st.item_vectors([r.id])[0] for p, r in st.items_under(rep["root"]).items()}
    for p in media:
        np.testing.assert_allclose(vecs[p.name], enc.encode_videos([str(p)])[0], atol=1e-5)


def test_window_index_loses_nothing_to_a_bad_video_and_a_rerun_is_unchanged(run_dir, clip_folder, tmp_path,
                                                                            capsys):
    from xmr.index.store import IndexStore

    folder, media = clip_folder
    data = media[2].read_bytes()
    media[2].write_bytes(data[: len(data) // 3])  # a corrupt clip
    idx, rep = _window_clips(folder, run_dir, tmp_path, capsys)
    assert rep["added"] == 2 and [Path(s["path"]).name for s in rep["skipped"]] == [media[2].name]

    def state():
        with IndexStore(idx, readonly=True) as st:
            out = {}
            for path, rec in st.items_under(rep["root"]).items():
                segs, vecs = st.segments_of(rec.id)
                out[Path(path).name] = ([(s.id, s.start, s.end) for s in segs], vecs.copy(),
                                        st.item_vectors([rec.id])[0].copy())
            return out, st.count_segments()

    before, nseg = state()
    assert set(before) == {media[0].name, media[1].name} and nseg == 6
    code, out, err = run_cli(capsys, "index", str(folder), "--index", str(idx), "--segment", "0.5",
                             "--segment-stride", "0.25", "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["unchanged"] == 2 and again["added"] == 0 and len(again["skipped"]) == 1
    after, nseg2 = state()
    assert nseg2 == nseg and set(after) == set(before)
    for k in before:
        assert after[k][0] == before[k][0]
        np.testing.assert_array_equal(after[k][1], before[k][1])
        np.testing.assert_array_equal(after[k][2], before[k][2])


def test_clip_window_times_follow_the_frame_models_window_plan(run_dir):
    from xmr.encoders import create_encoder
    from xmr.media.video import sample_timestamps
    from xmr.video.clips import clip_window_times
    from xmr.video.embed import VideoIndexConfig, segment_windows

    enc = create_encoder(f"trained:{run_dir}")
    whole, wins = clip_window_times(10.0, enc, VideoIndexConfig(window=4.0, stride=2.0))
    assert whole.tolist() == pytest.approx([2.5, 7.5])
    assert [(s, e) for s, e, _ in wins] == segment_windows(10.0, 4.0, 2.0) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert wins[1][2].tolist() == pytest.approx([3.0, 5.0])  # centres of the window's halves
    # a long video: windows grow by the fps plan's factor (3600 s at 1 fps, 1800 frames at most: x2)
    _, wins = clip_window_times(3600.0, enc, VideoIndexConfig())
    assert (wins[0][0], wins[0][1]) == (0.0, 8.0) and wins[1][0] == 4.0
    np.testing.assert_allclose(wins[1][2], sample_timestamps(3600.0, 2, start=4.0, end=12.0))


def test_moments_refused_on_a_clip_index_without_segments(run_dir):
    """An index a whole-clip model built before windows were embedded (no segments) says to re-index."""
    from xmr.encoders import create_encoder
    from xmr.video.clips import refuse_moments

    class _Reader:
        def __init__(self, n):
            self.n = n

        def count_segments(self):
            return self.n

    enc = create_encoder(f"trained:{run_dir}")
    with pytest.raises(ConfigError, match="re-index it .* --type video"):
        refuse_moments(enc, _Reader(0))
    refuse_moments(enc, _Reader(3))  # windows embedded: searched as any index
