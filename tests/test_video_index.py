"""Videos in the index: one vector per video + per-segment vectors, bad videos skipped like bad images, search
results with start/end, --type filter, exact merged search, schema v1 -> v3 upgrade, one transaction per video."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

av = pytest.importorskip("av", reason="video support needs PyAV (pip install 'xmr[video]')")

from _video_clips import make_clip  # noqa: E402
from conftest import FIXTURES, SAMPLES, SHARED_DATA  # noqa: E402
from xmr.errors import ConfigError, XmrIndexError  # noqa: E402
from xmr.index import IndexStore, VideoIndexConfig, index_folder  # noqa: E402
from xmr.retrieval import search_index, search_vector  # noqa: E402
from xmr.index.store import NewItem  # noqa: E402
from xmr.video import segment_windows  # noqa: E402

CLIP = FIXTURES / "video" / "video9771.mp4"


def _add_bad_videos(folder: Path) -> set[str]:
    data = CLIP.read_bytes()
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(1).bytes(40_000))
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 5])
    (folder / "zero.mp4").write_bytes(b"")
    return {"corrupt.mp4", "truncated.mp4", "zero.mp4"}


def test_segment_windows_and_frame_budget():
    assert segment_windows(3.0, 4.0, 2.0) == [(0.0, 3.0)]
    assert segment_windows(10.0, 4.0, 2.0) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert segment_windows(13.98, 4.0, 2.0)[-1] == (10.0, 13.98)
    cfg = VideoIndexConfig(fps=1.0, min_frames=8, max_frames=100)
    assert len(cfg.plan.times(3.0)[0]) == 8 and cfg.plan.times(3.0)[1] == 1.0  # short clip: min_frames
    t, scale = cfg.plan.times(7200.0)  # 2 h: 100 frames, windows 72x longer
    assert len(t) == 100 and scale == pytest.approx(72.0) and t.max() < 7200
    with pytest.raises(ConfigError):
        VideoIndexConfig(fps=0)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "media"
    d.mkdir()
    shutil.copy(CLIP, d / "gymnastics.mp4")
    make_clip(d / "synthetic.mkv", n_frames=50, fps=10, pattern="noise")
    shutil.copy(SAMPLES / "coffee.png", d / "coffee.png")
    return d


def test_index_videos_images_and_bad_videos(folder, tmp_path, tiny_encoder):
    bad = _add_bad_videos(folder)
    index = tmp_path / "idx"
    rep = index_folder(folder, index, tiny_encoder, show_progress=False)
    assert (rep.seen, rep.added, rep.total) == (6, 3, 3)
    reasons = {Path(p).name: r for p, r in rep.skipped}
    assert set(reasons) == bad
    assert "empty" in reasons["zero.mp4"] and "truncated" in reasons["truncated.mp4"]
    with IndexStore(index) as st:
        types = dict(st.db.execute("SELECT path, media_type FROM items"))
        assert sorted(types.values()) == ["image", "video", "video"]
        assert {Path(p).name for p, _ in st.skipped()} == bad
        (vid,) = [i for i, p in st.db.execute("SELECT id, path FROM items") if p.endswith("gymnastics.mp4")]
        segs, vecs = st.segments_of(vid)
        assert [(s.start, s.end) for s in segs] == segment_windows(13.980633, 4.0, 2.0)
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
        assert st.count_segments() == 6 + 2  # 14 s clip: 6 windows; 5 s clip: [0, 4), [2, 5)
        assert st.segments_faiss_index().ntotal == 8 and (index / "segments.faiss").exists()
    # a second run: nothing re-encoded, bad files reported again without decoding
    rep2 = index_folder(folder, index, tiny_encoder, show_progress=False)
    assert (rep2.added, rep2.unchanged, len(rep2.skipped)) == (0, 3, 3)


def test_search_reports_best_segment_and_filters_type(folder, tmp_path, tiny_encoder):
    index = tmp_path / "idx"
    index_folder(folder, index, tiny_encoder, show_progress=False)
    with IndexStore(index) as st:
        res = search_index(st, tiny_encoder, text="a little girl does gymnastics", k=10)
        assert len(res) == 3 and len({r.path for r in res}) == 3  # each file once
        for r in res:
            d = r.to_dict()
            if r.media_type == "video":
                assert 0 <= r.start < r.end <= 14.0 and {"start", "end"} <= set(d)
            else:
                assert r.start is None and "start" not in d and "end" not in d  # image JSON unchanged
        assert {r.media_type for r in search_index(st, tiny_encoder, text="x", media_type="video")} == {"video"}
        assert [r.media_type for r in search_index(st, tiny_encoder, text="x", media_type="image")] == ["image"]
        with pytest.raises(ConfigError):
            search_index(st, tiny_encoder, text="x", media_type="audio")


def test_merged_search_equals_brute_force(tmp_path, tiny_encoder):
    """Search over item + segment vectors == scoring every vector, for any k and type filter."""
    d = tmp_path / "media"
    d.mkdir()
    for i in range(5):
        make_clip(d / f"clip{i}.mp4", n_frames=30 + 10 * i, fps=10, pattern="noise", size=(64, 48), seed=i)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(d / f"img{i}.png")
    index = tmp_path / "idx"
    cfg = VideoIndexConfig(fps=4.0, window=1.0, stride=0.5)
    index_folder(d, index, tiny_encoder, show_progress=False, video=cfg)
    with IndexStore(index) as st:
        items = {i: (t, np.frombuffer(v, np.float32))
                 for i, t, v in st.db.execute("SELECT id, media_type, vector FROM items")}
        segs = st.db.execute("SELECT item_id, start, end, vector FROM segments").fetchall()
        for trial in range(8):
            q = rng.normal(size=st.dim).astype(np.float32)
            q /= np.linalg.norm(q)
            best = {i: (float(v @ q), None) for i, (_, v) in items.items()}
            for item_id, s, e, v in segs:
                sc = float(np.frombuffer(v, np.float32) @ q)
                if best[item_id][1] is None or sc > best[item_id][1][0]:
                    best[item_id] = (best[item_id][0], (sc, s, e))
            for want in (None, "video", "image"):
                for k in (1, 3, 20):
                    truth = sorted(((max(v, seg[0]) if seg else v), i) for i, (v, seg) in best.items()
                                   if want is None or items[i][0] == want)[::-1][:k]
                    got = search_vector(st, q, k, media_type=want)
                    assert [r.id for r in got] == [i for _, i in truth], (want, k, [(r.id, r.score) for r in got], truth)
                    assert [r.score for r in got] == pytest.approx([s for s, _ in truth], abs=1e-5)
                    for r in got:
                        if r.media_type == "video":
                            assert (r.start, r.end) == best[r.id][1][1:]


def test_video_change_and_delete_keep_segments_consistent(folder, tmp_path, tiny_encoder):
    index = tmp_path / "idx"
    index_folder(folder, index, tiny_encoder, show_progress=False)
    make_clip(folder / "synthetic.mkv", n_frames=90, fps=10, pattern="noise")  # now 9 s: 4 segments
    rep = index_folder(folder, index, tiny_encoder, show_progress=False)
    assert rep.updated == 1
    (folder / "gymnastics.mp4").unlink()
    rep = index_folder(folder, index, tiny_encoder, show_progress=False)
    assert rep.removed == 1 and rep.total == 2
    with IndexStore(index) as st:
        orphans = st.db.execute("SELECT COUNT(*) FROM segments WHERE item_id NOT IN (SELECT id FROM items)").fetchone()
        assert orphans[0] == 0 and st.count_segments() == 4
        assert st.segments_faiss_index().ntotal == 4


def test_video_row_and_segments_commit_together(tmp_path, tiny_encoder):
    index = tmp_path / "idx"
    with IndexStore(index, create=True) as st:
        st.bind_model("tiny", tiny_encoder.dim)
        v = np.ones(tiny_encoder.dim, np.float32) / np.sqrt(tiny_encoder.dim)
        bad = NewItem("/x/a.mp4", "/x", 1, 1.0, "h", "video", 8, 8, v,
                      segments=[(0.0, 4.0, v), (2.0, 6.0, v * np.nan)])
        with pytest.raises(XmrIndexError, match="bad segment vector"):
            st.add_batch([bad])
        assert st.count() == 0 and st.count_segments() == 0  # rolled back: no video row without its segments


def test_schema_v1_index_is_upgraded(tmp_path, tiny_encoder, sample_dir):
    from xmr.index.store import SCHEMA_VERSION

    index = tmp_path / "idx"
    index_folder(sample_dir, index, tiny_encoder, show_progress=False)
    with sqlite3.connect(index / "meta.sqlite") as c:  # make it look like an index written by xmr 0.1 (schema 1)
        c.execute("DROP TABLE segments")
        c.execute("DROP TABLE frames")
        c.execute("DROP TABLE expert_text")
        c.execute("DROP TABLE expert_state")
        c.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    with IndexStore(index, readonly=True) as st:  # read-only: usable as is, without segments
        assert st.count() == 8 and not st.has_segments and st.count_segments() == 0
        assert len(search_index(st, tiny_encoder, text="x", k=3)) == 3
    shutil.copy(CLIP, sample_dir / "clip.mp4")
    rep = index_folder(sample_dir, index, tiny_encoder, show_progress=False)
    assert rep.added == 1 and rep.unchanged == 8
    with IndexStore(index) as st:
        assert st.get_meta("schema_version") == str(SCHEMA_VERSION) and st.count_segments() == 6 and st.has_frames


def test_missing_pyav_reports_but_does_not_remember(folder, tmp_path, tiny_encoder, monkeypatch):
    from xmr.errors import MissingExtraError
    from xmr.media import video_reader as vmod  # VideoReader looks _av up there

    def no_av():
        raise MissingExtraError("av (PyAV) is needed ... pip install 'xmr[video]'")

    monkeypatch.setattr(vmod, "_av", no_av)
    index = tmp_path / "idx"
    rep = index_folder(folder, index, tiny_encoder, show_progress=False)
    assert rep.total == 1 and len(rep.skipped) == 2 and all("xmr[video]" in r for _, r in rep.skipped)
    monkeypatch.undo()
    rep = index_folder(folder, index, tiny_encoder, show_progress=False)  # PyAV back: the videos get indexed
    assert rep.added == 2 and rep.total == 3


def test_cli_index_and_search_videos_with_concept_model(tmp_path, capsys):
    """The user's view: `xmr index` a folder of real clips + bad videos, `xmr search ... --json` -> start/end."""
    from xmr.cli import main

    d = tmp_path / "clips"
    d.mkdir()
    shutil.copy(CLIP, d / CLIP.name)
    other = SHARED_DATA / "msrvtt-mini" / "video9770.mp4"
    if other.exists():  # on developer machines: both real MSR-VTT clips
        shutil.copy(other, d / other.name)
    bad = _add_bad_videos(d)
    index = tmp_path / "idx"
    assert main(["-q", "index", str(d), "--index", str(index), "--json", "--video-fps", "0.5"]) == 0  # 8 frames a clip
    rep = json.loads(capsys.readouterr().out)
    assert {Path(s["path"]).name for s in rep["skipped"]} == bad and rep["total"] == rep["added"] >= 1
    # cosine scores (the default model's QB-Norm on text queries would put them on its log scale)
    assert main(["-q", "search", "a little girl does gymnastics", "--index", str(index), "--json",
                 "--rescore", "none"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    assert len(res) == rep["total"]
    for r in res:
        assert r["media_type"] == "video" and isinstance(r["start"], float) and isinstance(r["end"], float)
        assert 0 <= r["start"] < r["end"] <= 14.0 and 0 <= r["score"] <= 1.0001
    # by default the text query is re-scored over the videos too (whole-video search accepts --rescore qbnorm)
    assert main(["-q", "search", "a little girl does gymnastics", "--index", str(index), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    st = next(s for s in d["stages"] if s["stage"] == "rescore")
    assert st["origin"] == "model default" and st["applied"] is True and len(d["results"]) == rep["total"]
    assert all(r["start"] is not None for r in d["results"])


def test_cli_type_filter_and_text_output(folder, tmp_path, capsys):
    from xmr.cli import main

    index = tmp_path / "idx"
    assert main(["-q", "index", str(folder), "--index", str(index), "--model", "tiny", "--segment", "3",
                 "--segment-stride", "1.5", "--video-fps", "2"]) == 0
    capsys.readouterr()
    assert main(["-q", "search", "gymnastics", "--index", str(index), "--type", "image", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    assert [r["media_type"] for r in res] == ["image"] and "start" not in res[0]
    assert main(["-q", "search", "gymnastics", "--index", str(index), "--type", "video"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.endswith(" s]") for line in lines)  # e.g. "1. 0.1234  /x/a.mp4  [3.0-6.0 s]"
    with IndexStore(index) as st:  # --segment / --segment-stride reached the indexer: 14 s in 3 s windows, 1.5 s hop
        assert st.count_segments() == len(segment_windows(13.980633, 3.0, 1.5)) + len(segment_windows(5.0, 3.0, 1.5))


def test_index_skips_a_png_renamed_mp4_with_the_reason(folder, tmp_path, capsys):
    """`xmr index` lists a photo with a video extension among the skipped files, with why, and indexes the rest."""
    from xmr.cli import main

    shutil.copy(SAMPLES / "chelsea.png", folder / "x.mp4")
    index = tmp_path / "idx"
    assert main(["-q", "index", str(folder), "--index", str(index), "--model", "tiny", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [(Path(s["path"]).name, s["reason"]) for s in rep["skipped"]] == [
        ("x.mp4", "not a video: a PNG image with a video file extension")]
    assert rep["total"] == rep["added"] == 3  # the two clips and coffee.png
    with IndexStore(index) as st:
        assert not any(p.endswith("x.mp4") for (p,) in st.db.execute("SELECT path FROM items"))


def test_cli_frame_snap_recorded_and_checked(tmp_path, capsys):
    """`xmr index --frame-snap F`: the sampling is recorded in the index meta (and shown by `xmr info`); exact runs
    record no snap (their meta is unchanged); a value outside [0, 0.5] is refused before anything is written."""
    from xmr.cli import main
    from xmr.index.indexer import VIDEO_SETTINGS_KEY

    d = tmp_path / "media"
    d.mkdir()
    make_clip(d / "a.mp4", n_frames=60, fps=10, gop=20)
    snapped, exact = tmp_path / "snapped", tmp_path / "exact"
    assert main(["-q", "index", str(d), "--index", str(snapped), "--model", "tiny", "--frame-snap", "0.5"]) == 0
    assert main(["-q", "index", str(d), "--index", str(exact), "--model", "tiny"]) == 0
    with IndexStore(snapped) as st:
        assert json.loads(st.get_meta(VIDEO_SETTINGS_KEY))["frames"]["snap"] == 0.5
        assert st.count_segments() > 0
    with IndexStore(exact) as st:
        assert "snap" not in json.loads(st.get_meta(VIDEO_SETTINGS_KEY))["frames"]
    capsys.readouterr()
    assert main(["info", "--index", str(snapped)]) == 0
    assert "within 0.5 grid steps" in capsys.readouterr().out
    for bad in ("0.7", "-0.1", "nan"):
        assert main(["-q", "index", str(d), "--index", str(tmp_path / f"bad{bad}"), "--model", "tiny",
                     "--frame-snap", bad]) == 2
        assert "snap" in capsys.readouterr().err
        assert not (tmp_path / f"bad{bad}").exists()
