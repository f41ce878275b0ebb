"""Indexing mechanics with the fast random `tiny` encoder: incremental updates, bad files, model binding, resume
after kill -9, and the FAISS cache being rebuilt from SQLite when stale or damaged."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES, REPO
from xmr.errors import XmrIndexError
from xmr.index import IndexStore, index_folder
from xmr.retrieval import search_index


def _make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def _paths(index) -> list[str]:
    with IndexStore(index) as st:
        return [r[0] for r in st.db.execute("SELECT path FROM items ORDER BY path")]


def test_incremental_add_change_delete(tmp_path, tiny_encoder):
    photos, index = tmp_path / "photos", tmp_path / "idx"
    imgs = _make_images(photos, 5)
    r1 = index_folder(photos, index, tiny_encoder, show_progress=False)
    assert (r1.added, r1.total) == (5, 5)

    r2 = index_folder(photos, index, tiny_encoder, show_progress=False)
    assert (r2.added, r2.unchanged, r2.total) == (0, 5, 5)

    imgs[0].unlink()  # deleted
    Image.new("RGB", (32, 24), "blue").save(imgs[1])  # changed content
    os.utime(imgs[2], (time.time() + 10, time.time() + 10))  # touched, same bytes
    _make_images(photos / "new", 1, seed=7)  # added
    r3 = index_folder(photos, index, tiny_encoder, show_progress=False)
    assert (r3.added, r3.updated, r3.removed, r3.unchanged, r3.total) == (1, 1, 1, 3, 5)
    assert str(imgs[0]) not in _paths(index)
    with IndexStore(index) as st:
        assert st.faiss_index().ntotal == st.count() == 5


def test_bad_files_are_skipped_and_listed(tmp_path, tiny_encoder):
    photos, index = tmp_path / "photos", tmp_path / "idx"
    _make_images(photos, 2)
    (photos / "trunc.jpg").write_bytes((FIXTURES / "truncated.jpg").read_bytes())
    (photos / "zero.png").write_bytes(b"")
    (photos / "text.jpg").write_text("hello")
    rep = index_folder(photos, index, tiny_encoder, show_progress=False)
    assert rep.total == 2
    reasons = dict((Path(p).name, r) for p, r in rep.skipped)
    assert set(reasons) == {"trunc.jpg", "zero.png", "text.jpg"}
    assert "empty" in reasons["zero.png"] and "truncated" in reasons["trunc.jpg"]
    with IndexStore(index) as st:  # listed in `info` too, and no vector was stored for them
        assert {Path(p).name for p, _ in st.skipped()} == set(reasons)
        assert st.count() == 2
    # unchanged bad files are reported again on the next run, not retried, not indexed
    rep2 = index_folder(photos, index, tiny_encoder, show_progress=False)
    assert len(rep2.skipped) == 3 and rep2.total == 2
    # fixing a file gets it indexed and clears its skip record
    Image.new("RGB", (8, 8)).save(photos / "zero.png")
    rep3 = index_folder(photos, index, tiny_encoder, show_progress=False)
    assert rep3.added == 1 and rep3.total == 3
    with IndexStore(index) as st:
        assert "zero.png" not in {Path(p).name for p, _ in st.skipped()}


def test_index_bound_to_one_model(tmp_path, tiny_encoder):
    from xmr import create_encoder

    photos, index = tmp_path / "photos", tmp_path / "idx"
    _make_images(photos, 1)
    index_folder(photos, index, tiny_encoder, show_progress=False)
    other = create_encoder("tiny")
    other.spec = "tiny:other"
    with pytest.raises(XmrIndexError, match="built with model 'tiny'"):
        index_folder(photos, index, other, show_progress=False)


def test_search_returns_ranked_results(tmp_path, tiny_encoder):
    photos, index = tmp_path / "photos", tmp_path / "idx"
    imgs = _make_images(photos, 6)
    index_folder(photos, index, tiny_encoder, show_progress=False)
    with IndexStore(index) as st:
        res = search_index(st, tiny_encoder, image=imgs[3], k=3)
        assert res[0].path == str(imgs[3]) and res[0].score == pytest.approx(1.0, abs=1e-4)
        assert [r.rank for r in res] == [1, 2, 3] and res[0].score >= res[1].score >= res[2].score
        assert len(search_index(st, tiny_encoder, text="anything", k=100)) == 6


def test_damaged_faiss_file_is_rebuilt(tmp_path, tiny_encoder):
    photos, index = tmp_path / "photos", tmp_path / "idx"
    _make_images(photos, 3)
    index_folder(photos, index, tiny_encoder, show_progress=False)
    (index / "vectors.faiss").write_bytes(b"garbage")
    with IndexStore(index) as st:
        assert st.faiss_index().ntotal == 3
    with IndexStore(index) as st:  # and it was written back
        assert st.faiss_index().ntotal == 3


_SLOW_INDEXER = textwrap.dedent(
    """
    import sys, time
    from xmr import create_encoder
    from xmr.index import index_folder
    enc = create_encoder("tiny")
    orig = enc._encode_image_batch
    def slow(images):
        time.sleep(0.25)  # make the run long enough to be killed in the middle
        return orig(images)
    enc._encode_image_batch = slow
    index_folder(sys.argv[1], sys.argv[2], enc, batch_size=2, show_progress=False)
    """
)


def test_kill_9_mid_run_then_resume_indexes_each_file_once(tmp_path, tiny_encoder):
    photos, index = tmp_path / "photos", tmp_path / "idx"
    imgs = _make_images(photos, 24)
    script = tmp_path / "slow_index.py"
    script.write_text(_SLOW_INDEXER)
    proc = subprocess.Popen([sys.executable, str(script), str(photos), str(index)], cwd=REPO)
    db = index / "meta.sqlite"
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as c:
                    done = c.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 6:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "indexer finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(_paths(index))
    assert 6 <= partial < 24
    rep = index_folder(photos, index, tiny_encoder, show_progress=False)
    assert rep.added == 24 - partial and rep.unchanged == partial
    paths = _paths(index)
    assert paths == sorted(str(p) for p in imgs)  # every file exactly once (path is UNIQUE, count matches)
    with IndexStore(index) as st:
        assert st.faiss_index().ntotal == 24
