"""Contract tests of every registered vector backend (xmr.index.backends), through the backend itself and through
an index (store, snapshot reader, live index), on clustered synthetic vectors."""
from __future__ import annotations

import time

import numpy as np
import pytest

from xmr.errors import ConfigError, XmrIndexError
from xmr.index.backends import VECTOR_BACKENDS, create_backend, exact_rerank, parse_backend
from xmr.index.backends.base import ArraySource
from xmr.registries import load_all

load_all("vector_backend")
NAMES = sorted(e.name for e in VECTOR_BACKENDS)
EXACT = {"flat"}
#: recall@10 (after exact re-ranking) each approximate backend must reach on the data below; a new backend must
#: add its bound here (the test fails with a KeyError otherwise)
RECALL_BOUND = {"hnsw": 0.9, "ivf": 0.9, "ivfpq": 0.8, "binary": 0.4, "milvus": 0.95}  # binary: 32 sign bits of real
# vectors (random ranking would give 0.007); on true hash codes it is exact (test_binary_is_exact_on_sign_codes)
DIM = 32


def clustered(n: int, seed: int = 0, dim: int = DIM, clusters: int = 12) -> np.ndarray:
    """Unit vectors around ``clusters`` centres (not uniform noise: neighbours are close, clusters overlap)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(clusters, dim))
    x = c[rng.integers(0, clusters, n)] + 0.6 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    s = q @ x.T
    return ids[np.argsort(-s, axis=1, kind="stable")[:, :k]]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def make(name: str, tmp_path):
    b = create_backend({"name": name, "config": {}}, DIM)
    if name == "milvus":
        b.attach(tmp_path, "vectors")
    return b


def ranked(b, q, k, fetch):
    if b.exact:
        return b.search(q, k)
    _, cand = b.search(q, b.candidates(k))
    return exact_rerank(q, cand, fetch, k)


@pytest.fixture(scope="module")
def data():
    both = clustered(1540)
    x, q = both[:1500], both[1500:]  # held-out queries from the same distribution
    ids = np.arange(1, 1501, dtype=np.int64) * 7  # ids are not positions
    return x, ids, q, brute(x, ids, q, 10)


def test_every_backend_has_a_bound():
    assert set(NAMES) == EXACT | set(RECALL_BOUND)


@pytest.mark.parametrize("name", NAMES)
def test_search_contract(name, data, tmp_path):
    """Exact backends equal brute force; approximate ones reach their recall bound after exact re-ranking; scores
    after re-ranking are the exact inner products; persistence across reopen keeps the results."""
    x, ids, q, truth = data
    src = ArraySource(ids, x)
    b = make(name, tmp_path)
    b.build(src)
    assert b.ntotal == len(ids) and set(b.ids().tolist()) == set(ids.tolist())
    scores, found = ranked(b, q, 10, src.vectors)
    if name in EXACT:
        np.testing.assert_array_equal(found, truth)
    else:
        assert recall(found, truth) >= RECALL_BOUND[name], recall(found, truth)
        pos = {int(i): j for j, i in enumerate(ids)}
        want = np.array([[x[pos[int(i)]] @ qq for i in row] for row, qq in zip(found, q)])
        np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-5)
    b.save(tmp_path, "vectors")
    b.release()
    again = type(b).load(tmp_path, "vectors", DIM, b.config, b.tuned)
    np.testing.assert_array_equal(ranked(again, q, 10, src.vectors)[1], found)
    again.release()


@pytest.mark.parametrize("name", NAMES)
def test_updates_add_and_remove(name, data, tmp_path):
    x, ids, q, _ = data
    src = ArraySource(ids[:1000], x[:1000])
    b = make(name, tmp_path)
    b.build(src)
    gone = ids[:50]
    b.remove(gone)
    b.add(ids[1000:], x[1000:])  # rows added to the live index, no rebuild
    assert b.ntotal == len(ids) - 50
    full = ArraySource(ids, x)
    _, found = ranked(b, x[:50], 5, full.vectors)  # the removed rows' own vectors as queries
    assert not set(found.ravel().tolist()) & set(gone.tolist())
    _, found = ranked(b, x[1000:1050], 10, full.vectors)  # the added rows find themselves
    hit = np.array([i in row for i, row in zip(ids[1000:1050], found)])
    assert hit.mean() >= (1.0 if name in EXACT else 0.9)
    assert (found[hit, 0] == ids[1000:1050][hit]).all()  # re-ranked exactly: a row found is its own best match
    # rows kept from the build are still found under their own ids (an IndexIDMap2 around an IVF renumbered them)
    _, found = ranked(b, x[100:150], 5, full.vectors)
    kept = ids[100:150]
    assert (found[:, 0] == kept).mean() >= (1.0 if name in EXACT else 0.9), (found[:, 0], kept)
    b.release()


@pytest.mark.parametrize("name", ["flat", "hnsw", "ivf", "ivfpq"])
def test_mmap_load_then_update(name, data, tmp_path):
    """A memory-mapped index answers like the loaded one and copies itself into memory before an update (FAISS
    aborts the process on resizing a mapped array)."""
    x, ids, q, _ = data
    b = make(name, tmp_path)
    b.build(ArraySource(ids[:1000], x[:1000]))
    b.save(tmp_path, "vectors")
    m = type(b).load(tmp_path, "vectors", DIM, b.config, b.tuned, mmap=True)
    np.testing.assert_array_equal(m.search(q, 10)[1], b.search(q, 10)[1])
    m.add(ids[1000:1010], x[1000:1010])
    m.remove(ids[:5])
    assert m.ntotal == 1005


def test_tuning_records_what_it_measured(data):
    x, ids, _, _ = data
    b = create_backend({"name": "hnsw", "config": {"target_recall": 0.99, "heldout": 100}}, DIM)
    b.build(ArraySource(ids, x))
    t = b.tuned
    assert t["heldout_queries"] == 100 and t["factory"] == "HNSW32,Flat"
    assert t["met_target"] == (t["recall@10"] >= 0.99)
    assert t["efSearch"] == t["tuning"][-1][0]  # the value the sweep stopped at is the one kept
    assert [r[0] for r in t["tuning"]] == sorted(r[0] for r in t["tuning"])  # cheapest first


def test_binary_is_exact_on_sign_codes(tmp_path):
    """On ±1 codes the Hamming score d - 2h is the inner product: the ranking equals brute force."""
    rng = np.random.default_rng(3)
    codes = np.sign(rng.normal(size=(300, 64))).astype(np.float32)
    ids = np.arange(300, dtype=np.int64)
    b = create_backend({"name": "binary", "config": {}}, 64)
    b.build(ArraySource(ids, codes))
    s, found = b.search(codes[:20], 5)
    want = codes[:20] @ codes.T
    np.testing.assert_allclose(s, np.sort(want, axis=1)[:, ::-1][:, :5])


def test_parse_backend():
    assert parse_backend("flat") == {"name": "flat", "config": {}}
    assert parse_backend("hnsw:target_recall=0.98,M=16") == {"name": "hnsw",
                                                            "config": {"target_recall": 0.98, "M": 16}}
    assert parse_backend("milvus://localhost:19530")["config"] == {"uri": "milvus://localhost:19530"}
    for bad, msg in (("nope", "unknown vector backend"), ("hnsw:bogus=1", "unknown option"),
                     ("hnsw:M", "key=value"), ("milvus://host", "milvus://HOST:PORT")):
        with pytest.raises(ConfigError, match=msg):
            parse_backend(bad)
    with pytest.raises(ConfigError, match="multiple of 8"):
        create_backend({"name": "binary", "config": {}}, 12)
    for bad, msg in (("ivf:nlist=-1", "outside the allowed range"), ("hnsw:M=x", "M must be"),
                     ("ivfpq:target_recall=1.5", "outside the allowed range")):
        with pytest.raises(ConfigError, match=msg):
            parse_backend(bad)


def test_ivf_plan_follows_the_faiss_guideline():
    """nlist = 4 sqrt(n) as a power of two, 39 training rows per cell (+5 % for the row-by-row draw), HNSW quantizer;
    small collections get fewer cells (training rows / 39); explicit options win."""
    b = create_backend({"name": "ivf", "config": {}}, 512)
    assert b._plan(1_000_000) == (4096, 167_732) and b._make(1_000_000, 0) == "IVF4096_HNSW32,Flat"
    assert b._plan(200_000) == (2048, 83_866)
    assert b._plan(1500) == (34, 1350)  # 150 rows held out for tuning
    b = create_backend(parse_backend("ivf:nlist=256,train_size=20000,quantizer_M=0"), 512)
    assert b._plan(1_000_000) == (256, 20_000) and b._make(1_000_000, 0) == "IVF256,Flat"


def test_ivf_tuned_nprobe_survives_reload(data, tmp_path):
    """FAISS saves neither nprobe nor the HNSW quantizer's efSearch: both come back from the tuned record."""
    import faiss

    x, ids, q, _ = data
    b = create_backend({"name": "ivf", "config": {"heldout": 100}}, DIM)
    b.build(ArraySource(ids, x))
    nprobe = b.tuned["nprobe"]
    assert 1 <= nprobe <= b.index.nlist and b.tuned["factory"].startswith("IVF") and b.tuned["trained_on"] > 0
    b.save(tmp_path, "vectors")
    again = type(b).load(tmp_path, "vectors", DIM, b.config, b.tuned)
    assert again.index.nprobe == nprobe
    assert faiss.downcast_index(again.index.quantizer).hnsw.efSearch == max(64, 2 * nprobe)
    np.testing.assert_array_equal(again.search(q, 10)[1], b.search(q, 10)[1])


def test_ivfpq_in_the_old_idmap_layout_is_rebuilt(data, tmp_path):
    """An ivfpq file saved inside an IndexIDMap2 (xmr before 2026-12: ids wrong after a removal) is not loaded."""
    import faiss

    x, ids, _, _ = data
    b = create_backend({"name": "ivfpq", "config": {"heldout": 100}}, DIM)
    b.build(ArraySource(ids, x))
    faiss.write_index(faiss.IndexIDMap2(faiss.index_factory(DIM, "IVF4,PQ4x4", faiss.METRIC_INNER_PRODUCT)),
                      str(tmp_path / "vectors.faiss"))
    assert type(b).load(tmp_path, "vectors", DIM, b.config, b.tuned) is None


def test_unreachable_milvus_fails_fast(tmp_path):
    b = create_backend(parse_backend("milvus://127.0.0.1:9"), DIM)  # port 9 (discard): nothing listens
    b.attach(tmp_path, "vectors")
    t = time.perf_counter()
    with pytest.raises(XmrIndexError, match="cannot reach Milvus at milvus://127.0.0.1:9"):
        b.client()
    assert time.perf_counter() - t < 15
