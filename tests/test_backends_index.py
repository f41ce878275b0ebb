"""Vector backends inside an index: ``xmr index --backend`` / ``--from-embeddings``, ``xmr search --vector`` with
several rows, ``xmr info``, updates applied as deltas (store and live server), crash safety of the saved files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli
from test_backends import NAMES, RECALL_BOUND, brute, clustered, recall

from xmr.index import IndexStore
from xmr.index.backends import backend_class
from xmr.index.snapshot import open_reader
from xmr.index.store import NewItem
from xmr.retrieval import search_vector

DIM = 32


def new_items(x: np.ndarray, start: int = 0, root: str = "/r") -> list[NewItem]:
    return [NewItem(f"{root}/{start + i}.jpg", root, 1, 0.0, "", "image", None, None, v) for i, v in enumerate(x)]


def make_index(path, x, backend: str) -> None:
    with IndexStore(path, create=True) as st:
        st.bind_model("external", DIM)
        st.set_vector_backend({"name": backend, "config": {}})
        for s in range(0, len(x), 500):
            st.add_batch(new_items(x[s : s + 500], s))
        st.sync_faiss()


def top_paths(path, q: np.ndarray, k: int = 10):
    store, reader = open_reader(path)
    try:
        return [[r.path for r in search_vector(reader, qq, k)] for qq in q]
    finally:
        store.close()


@pytest.fixture(scope="module")
def data():
    both = clustered(1240, seed=5)
    return both[:1200], both[1200:]


@pytest.mark.parametrize("name", NAMES)
def test_index_search_through_backend(name, data, tmp_path):
    x, q = data
    make_index(tmp_path / "idx", x, name)
    truth = [[f"/r/{i}.jpg" for i in row] for row in brute(x, np.arange(len(x)), q, 10)]
    got = top_paths(tmp_path / "idx", q)
    if name == "flat":
        assert got == truth
    else:
        assert recall(np.array(got), np.array(truth)) >= RECALL_BOUND[name]
    store, reader = open_reader(tmp_path / "idx")
    try:
        out = search_vector(reader, q[0], 3)
        scores = [r.score for r in out]
        want = sorted((x @ q[0]).tolist(), reverse=True)[:3]
        if name == "flat":
            np.testing.assert_allclose(scores, want, rtol=1e-5)
        assert reader.backend.name == name
    finally:
        store.close()


@pytest.mark.parametrize("name", NAMES)
def test_updates_are_deltas_not_rebuilds(name, data, tmp_path, monkeypatch):
    """After the first build, new, re-encoded and deleted rows reach the saved backend as a delta: build() is never
    called again, and the results follow the change."""
    x, q = data
    idx = tmp_path / "idx"
    make_index(idx, x[:1000], name)
    cls = backend_class(name)

    def no_rebuild(self, *a, **k):
        raise AssertionError("rebuilt from every vector instead of applying the delta")

    monkeypatch.setattr(cls, "build", no_rebuild)
    with IndexStore(idx) as st:
        st.add_batch(new_items(x[1000:], 1000))
        st.delete([1, 2, 3])  # items.id 1..3 are /r/0..2.jpg
        st.add_batch(new_items(-x[10:11], 10))  # /r/10.jpg re-encoded in place (same id, new vector)
        st.sync_faiss()
    gone = {"/r/0.jpg", "/r/1.jpg", "/r/2.jpg"}
    got = top_paths(idx, np.concatenate([x[:3], x[1000:1010], -x[10:11], x[100:110]]), 10)
    assert not gone & {p for row in got for p in row}
    found_new = np.mean([f"/r/{1000 + i}.jpg" in got[3 + i] for i in range(10)])
    assert found_new >= (1.0 if name == "flat" else 0.9)
    assert got[13][0] == "/r/10.jpg"  # the re-encoded vector is the one searched
    # rows untouched by the update keep their paths (an IVF behind an IndexIDMap2 shifted them after a delete)
    assert np.mean([got[14 + i][0] == f"/r/{100 + i}.jpg" for i in range(10)]) >= (1.0 if name == "flat" else 0.9)
    with IndexStore(idx, readonly=True) as st:
        assert st.backend_state()["generation"] == st.generation
        assert st.faiss_index().ntotal == st.count() == 1197


def test_reader_brings_a_stale_cache_up_to_date_in_memory(data, tmp_path):
    x, q = data
    idx = tmp_path / "idx"
    make_index(idx, x[:600], "hnsw")
    with IndexStore(idx) as st:  # a writer commits without syncing (e.g. killed before its last step)
        st.add_batch(new_items(x[600:700], 600))
    before = (idx / "vectors.json").read_text()
    got = top_paths(idx, x[600:610], 10)
    assert np.mean([f"/r/{600 + i}.jpg" in row for i, row in enumerate(got)]) >= 0.9
    assert (idx / "vectors.json").read_text() == before  # a reader never writes the cache


@pytest.mark.parametrize("damage", ["garbage", "missing", "state-ahead"])
def test_damaged_backend_files_are_rebuilt_from_sqlite(damage, data, tmp_path):
    x, q = data
    idx = tmp_path / "idx"
    make_index(idx, x[:500], "flat")
    if damage == "garbage":
        (idx / "vectors.faiss").write_bytes(b"not a faiss file")
    elif damage == "missing":
        (idx / "vectors.faiss").unlink()
    else:  # the state file names ids the FAISS file does not hold (a crash between the two writes)
        with IndexStore(idx) as st:
            st.add_batch(new_items(x[500:], 500))
        s = json.loads((idx / "vectors.json").read_text())
        s["generation"] += 1
        (idx / "vectors.json").write_text(json.dumps(s))
    n = 500 if damage != "state-ahead" else len(x)
    truth = [[f"/r/{i}.jpg" for i in row] for row in brute(x[:n], np.arange(n), q, 10)]
    assert top_paths(idx, q) == truth


def test_switching_backend_rebuilds_and_records(data, tmp_path, capsys):
    x, _ = data
    idx = tmp_path / "idx"
    make_index(idx, x, "flat")
    with IndexStore(idx) as st:
        st.set_vector_backend({"name": "ivfpq", "config": {"heldout": 100}})
        st.sync_faiss()
    code, out, _ = run_cli(capsys, "info", "--index", str(idx), "--json")
    b = json.loads(out)["vector_backend"]
    assert code == 0 and b["name"] == "ivfpq" and b["config"] == {"heldout": 100}
    assert b["tuned"]["heldout_queries"] == 100 and b["tuned"]["factory"].startswith("IVF")
    code, out, _ = run_cli(capsys, "info", "--index", str(idx))
    assert "vectors: ivfpq" in out and "nprobe=" in out and "held-out vectors" in out


def test_live_index_applies_updates_to_a_copy(data, tmp_path):
    from xmr.serve.live import LiveIndex

    x, _ = data
    idx = tmp_path / "idx"
    make_index(idx, x[:800], "hnsw")
    live = LiveIndex(idx)
    old = live.snapshot()
    with IndexStore(idx) as st:
        st.add_batch(new_items(x[800:900], 800))
        st.delete([5])
    new = live.snapshot()
    assert (old.count, new.count) == (800, 899) and old.items.ntotal == 800  # the old snapshot is untouched
    got = [r.path for r in search_vector(live.reader(new), x[850], 5)]
    assert got[0] == "/r/850.jpg"


# ---- xmr index --from-embeddings ------------------------------------------------------------------------------------
def write_clip_retrieval(folder, shards, dtype=np.float16, dim=DIM):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "img_emb").mkdir(parents=True)
    (folder / "metadata").mkdir()
    rng = np.random.default_rng(0)
    out = []
    for s, n in enumerate(shards):
        v = rng.normal(size=(n, dim))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        np.save(folder / "img_emb" / f"img_emb_{s}.npy", v.astype(dtype))
        pq.write_table(pa.table({"image_path": [f"/imgs/{s}_{i}.jpg" for i in range(n)], "caption": ["c"] * n}),
                       folder / "metadata" / f"metadata_{s}.parquet")
        out.append(v.astype(dtype).astype(np.float32))
    return np.concatenate(out)


def test_from_embeddings_then_vector_search(tmp_path, capsys):
    emb = tmp_path / "emb"
    x = write_clip_retrieval(emb, [120, 80])
    idx = tmp_path / "idx"
    code, out, err = run_cli(capsys, "index", "--from-embeddings", str(emb), "--index", str(idx), "--json")
    rep = json.loads(out)
    assert code == 0 and rep["rows"] == 200 and rep["shards"] == 2 and rep["model"] == "external"
    q = x[[3, 150, 7]] + 0.01
    np.save(tmp_path / "q.npy", q)
    code, out, _ = run_cli(capsys, "search", "--vector", str(tmp_path / "q.npy"), "--index", str(idx), "--k", "4",
                           "--json")
    d = json.loads(out)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    paths = [f"/imgs/0_{i}.jpg" for i in range(120)] + [f"/imgs/1_{i}.jpg" for i in range(80)]
    truth = [[paths[i] for i in row] for row in brute(xn, np.arange(200), q.astype(np.float32), 4)]
    assert code == 0 and d["queries"] == 3 and [[r["path"] for r in row] for row in d["results"]] == truth
    np.save(tmp_path / "q1.npy", q[0])  # one vector (D,): the single-query output of before
    code, out, _ = run_cli(capsys, "search", "--vector", str(tmp_path / "q1.npy"), "--index", str(idx), "--k", "4",
                           "--json")
    d1 = json.loads(out)
    assert [r["path"] for r in d1["results"]] == truth[0] and d1["query"]["terms"][0]["kind"] == "vector"
    code, _, err = run_cli(capsys, "search", "a cat", "--index", str(idx))
    assert code != 0 and "imported without a model" in err and "Traceback" not in err


def test_from_embeddings_parquet_vector_column_with_backend(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = clustered(300, seed=2)
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.table({"image_path": [f"/p/{i}.jpg" for i in range(300)], "embedding": list(x)}),
                   tmp_path / "pq" / "part-0.parquet")
    idx = tmp_path / "idx"
    code, out, err = run_cli(capsys, "index", "--from-embeddings", str(tmp_path / "pq"), "--index", str(idx),
                             "--backend", "hnsw:heldout=30")
    assert code == 0, err
    assert "imported 300 vectors" in out and "vectors: hnsw" in out
    code, out, _ = run_cli(capsys, "search", "--vector", str(_save(tmp_path, x[42])), "--index", str(idx), "--k",
                           "1", "--json")
    d = json.loads(out)
    assert d["results"][0]["path"] == "/p/42.jpg"
    first = d["stages"][0]
    assert first["backend"] == "hnsw" and first["exact"] is False and first["rerank"]["exact"] is True


def _save(tmp_path, v):
    p = tmp_path / "v.npy"
    np.save(p, v)
    return p


@pytest.mark.parametrize("bad", ["width", "nan", "rows", "metadata", "column"])
def test_bad_embeddings_are_refused_naming_the_file(bad, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb = tmp_path / "emb"
    write_clip_retrieval(emb, [50, 40])
    f = emb / "img_emb" / "img_emb_1.npy"
    meta = emb / "metadata" / "metadata_1.parquet"
    if bad == "width":
        np.save(f, np.ones((40, DIM + 1), np.float32))
    elif bad == "nan":
        v = np.load(f)
        v[7, 3] = np.nan
        np.save(f, v)
    elif bad == "rows":
        np.save(f, np.ones((41, DIM), np.float32))
    elif bad == "metadata":
        meta.unlink()
    else:
        pq.write_table(pa.table({"path": ["x"] * 40}), meta)
    idx = tmp_path / "idx"
    code, out, err = run_cli(capsys, "index", "--from-embeddings", str(emb), "--index", str(idx))
    assert code != 0 and "Traceback" not in err
    named = str(meta) if bad == "column" else str(f)
    assert named in err, err
    if bad != "column":  # refused before the index is created
        assert not (idx / "meta.sqlite").exists()


def test_index_needs_a_folder_or_embeddings(tmp_path, capsys):
    code, _, err = run_cli(capsys, "index", "--index", str(tmp_path / "i"))
    assert code != 0 and "--from-embeddings" in err
    code, _, err = run_cli(capsys, "index", str(tmp_path), "--backend", "nope", "--index", str(tmp_path / "i"))
    assert code != 0 and "unknown vector backend 'nope'" in err


def test_unreachable_milvus_index_fails_fast(tmp_path, capsys):
    import time

    emb = tmp_path / "emb"
    write_clip_retrieval(emb, [20])
    t = time.perf_counter()
    code, _, err = run_cli(capsys, "index", "--from-embeddings", str(emb), "--index", str(tmp_path / "i"),
                           "--backend", "milvus://127.0.0.1:9")
    assert code != 0 and "cannot reach Milvus at milvus://127.0.0.1:9" in err
    assert time.perf_counter() - t < 20


def test_unchanged_index_is_not_rewritten_and_old_layout_is_adopted(data, tmp_path, monkeypatch):
    x, q = data
    idx = tmp_path / "idx"
    make_index(idx, x[:300], "flat")
    stamp = (idx / "vectors.faiss").stat().st_mtime_ns
    with IndexStore(idx) as st:
        st.sync_faiss()  # a no-op `xmr index` run ends with this
    assert (idx / "vectors.faiss").stat().st_mtime_ns == stamp
    (idx / "vectors.json").unlink()  # an index written before backends: vectors.faiss + vectors.gen only
    monkeypatch.setattr(backend_class("flat"), "build", lambda *a, **k: pytest.fail("rebuilt an up-to-date index"))
    with IndexStore(idx) as st:
        assert st.faiss_index().ntotal == 300
    assert json.loads((idx / "vectors.json").read_text())["backend"]["name"] == "flat"


def test_index_folder_with_backend_records_it_and_search_uses_it(tmp_path, capsys):
    """`xmr index DIR --backend` on real images: recorded, used by `xmr search` (stage record), switchable."""
    from conftest import SAMPLES

    idx = tmp_path / "idx"
    code, out, err = run_cli(capsys, "-q", "index", str(SAMPLES), "--index", str(idx), "--model", "tiny",
                             "--backend", "hnsw")
    assert code == 0, err
    assert "vectors: hnsw (efSearch=1024" in out  # 8 rows: too few to hold out queries, the most exact value
    code, out, err = run_cli(capsys, "search", "a horse", "--index", str(idx), "--k", "3", "--json")
    d = json.loads(out)
    assert code == 0 and d["stages"][0]["backend"] == "hnsw" and len(d["results"]) == 3
    code, out, err = run_cli(capsys, "-q", "index", str(SAMPLES), "--index", str(idx), "--model", "tiny",
                             "--backend", "flat")
    assert code == 0 and "vectors: flat (exact)" in out
    code, out2, _ = run_cli(capsys, "search", "a horse", "--index", str(idx), "--k", "3", "--json")
    d2 = json.loads(out2)
    assert d2["stages"][0]["backend"] == "faiss-flat-ip"
    assert [r["path"] for r in d2["results"]] == [r["path"] for r in d["results"]]  # 8 rows: hnsw finds them all


def test_export_then_import_round_trip(data, tmp_path, capsys):
    """The layout contract with `xmr export` (xmr.embed): an exported index imports back with the same paths, media
    types, vectors and model (from embed_info.json), into another backend."""
    x, q = data
    src = tmp_path / "src"
    with IndexStore(src, create=True) as st:
        st.bind_model("tiny", DIM)
        items = new_items(x[:250])
        items[3].media_type = "video"
        st.add_batch(items)
        st.sync_faiss()
    code, _, err = run_cli(capsys, "export", "--index", str(src), "--out", str(tmp_path / "out"), "--dtype", "float16")
    assert code == 0, err
    code, out, err = run_cli(capsys, "index", "--from-embeddings", str(tmp_path / "out"), "--index",
                             str(tmp_path / "dst"), "--backend", "hnsw", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["rows"] == 250 and rep["model"] == "tiny", err
    with IndexStore(tmp_path / "dst", readonly=True) as a, IndexStore(src, readonly=True) as b:
        ra, rb = a.items_under(str((tmp_path / "out").absolute())), b.items_under("/r")
        assert set(ra) == set(rb) and ra["/r/3.jpg"].media_type == "video"
        va = a.item_vectors([ra[p].id for p in sorted(ra)])
        vb = b.item_vectors([rb[p].id for p in sorted(rb)])
        np.testing.assert_allclose(va, vb, atol=2e-3)  # float16 shards
    code, _, err = run_cli(capsys, "index", "--from-embeddings", str(tmp_path / "out"), "--index",
                           str(tmp_path / "dst2"), "--model", "concept")
    assert code != 0 and "embed_info.json" in err and "'tiny'" in err
