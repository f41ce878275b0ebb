"""Re-scoring: QB-Norm, dual softmax, CSLS against hand-computed cases and straightforward dense formulas."""
from __future__ import annotations

import numpy as np
import pytest

from xmr.errors import ConfigError
from xmr.rescore import (CSLS, QBNorm, QueryBank, RESCORERS, build_pipeline, csls, dual_softmax, qb_norm,
                         qb_norm_topk, read_bank_texts)


def reference_qbnorm(test, bank, beta, k):
    """The paper's formula written the obvious way (dense exp, float64), on copies."""
    test = np.array(test, dtype=np.float64)
    bank = np.array(bank, dtype=np.float64)
    active = np.unique(np.argsort(-bank, axis=1, kind="stable")[:, :k])
    z = np.exp(beta * bank).sum(axis=0)
    out = test.copy()
    for q in range(len(test)):
        if np.argmax(test[q]) in active:
            out[q] = np.exp(beta * test[q]) / z
    return out


def test_qbnorm_hand_case():
    test = np.array([[0.9, 0.1, 0.0],   # top-1 = item 0, in the activation set -> normalised
                     [0.1, 0.2, 0.8]])  # top-1 = item 2, never a bank top-1 -> unchanged
    bank = np.array([[0.5, 0.2, 0.1],
                     [0.1, 0.6, 0.3]])  # activation set {0, 1}
    before = (test.copy(), bank.copy())
    out = qb_norm(test, bank, beta=1.0, k=1, output="prob")
    z = np.exp(bank).sum(axis=0)
    np.testing.assert_allclose(out[0], np.exp(test[0]) / z)
    np.testing.assert_array_equal(out[1], test[1])
    np.testing.assert_array_equal(test, before[0])  # inputs untouched
    np.testing.assert_array_equal(bank, before[1])
    log = qb_norm(test, bank, beta=1.0, k=1)  # default: log domain
    np.testing.assert_allclose(log[0], test[0] - np.log(z))
    np.testing.assert_array_equal(log[1], test[1])
    # k=2: item 2 is in bank row 1's top-2, so row 1 is normalised too
    np.testing.assert_allclose(qb_norm(test, bank, beta=1.0, k=2, output="prob")[1], np.exp(test[1]) / z)
    # inverted: every row
    np.testing.assert_allclose(qb_norm(test, bank, beta=1.0, mode="inverted", output="prob"), np.exp(test) / z)


@pytest.mark.parametrize("k", [1, 3])
def test_qbnorm_matches_reference_formula_and_rankings(k):
    rng = np.random.default_rng(1)
    test = rng.uniform(-1, 1, (60, 40)).astype(np.float32)
    bank = rng.uniform(-1, 1, (200, 40)).astype(np.float32)
    ref = reference_qbnorm(test, bank, 20.0, k)
    prob = qb_norm(test, bank, beta=20.0, k=k, output="prob")
    np.testing.assert_allclose(prob, ref, rtol=1e-6)
    log = qb_norm(test, bank, beta=20.0, k=k)
    assert log.dtype == np.float32
    np.testing.assert_array_equal(np.argsort(-log, axis=1, kind="stable"), np.argsort(-ref, axis=1, kind="stable"))


def test_qbnorm_log_domain_survives_large_beta():
    rng = np.random.default_rng(2)
    test, bank = rng.uniform(-1, 1, (10, 8)), rng.uniform(-1, 1, (50, 8))
    out = qb_norm(test, bank, beta=2000.0, mode="inverted")  # exp(2000) overflows float64
    assert np.isfinite(out).all()
    x = 2000.0 * bank
    lse = x.max(0) + np.log(np.exp(x - x.max(0)).sum(0))
    np.testing.assert_allclose(out, 2000.0 * test - lse)


def test_streaming_bank_equals_dense():
    rng = np.random.default_rng(3)
    txt = rng.standard_normal((1000, 16)).astype(np.float32)
    gal = rng.standard_normal((70, 16)).astype(np.float32)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    gal /= np.linalg.norm(gal, axis=1, keepdims=True)
    dense = txt @ gal.T
    streamed = QueryBank.from_embeddings(txt, gal, chunk=77)  # 13 uneven chunks
    whole = QueryBank.from_sims(dense)
    for scale in (1.0, 20.0, 100.0):
        ref = np.log(np.exp(scale * dense.astype(np.float64)).sum(0))
        # chunked float32 matrix products round differently from one big product: ~1e-7 relative
        np.testing.assert_allclose(streamed.logsumexp(scale), ref, rtol=1e-6)
        np.testing.assert_allclose(whole.logsumexp(scale), ref, rtol=1e-9, atol=1e-9)
    for k in (1, 4):
        expect = np.zeros(70, bool)
        expect[np.argsort(-dense, axis=1, kind="stable")[:, :k]] = True
        np.testing.assert_array_equal(streamed.activation(k), expect)
        np.testing.assert_allclose(streamed.topk_mean(k), -np.sort(-dense, axis=0)[:k].mean(0), rtol=1e-6)
    test = rng.uniform(-1, 1, (30, 70)).astype(np.float32)
    a, b = qb_norm(test, streamed), qb_norm(test, dense)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(np.argsort(-a, axis=1), np.argsort(-b, axis=1))


def test_qbnorm_topk_equals_dense_at_candidates():
    rng = np.random.default_rng(4)
    test, bank = rng.uniform(-1, 1, (40, 30)), rng.uniform(-1, 1, (100, 30))
    dense = qb_norm(test, bank, beta=20.0)
    cols = np.argsort(-test, axis=1)[:, :5]
    scores = np.take_along_axis(test, cols, 1)
    cols_missing = cols.copy()
    cols_missing[0, 4] = -1
    got = qb_norm_topk(scores, cols, QueryBank.from_sims(bank), beta=20.0)
    np.testing.assert_allclose(got, np.take_along_axis(dense, cols, 1))
    got2 = qb_norm_topk(scores, cols_missing, QueryBank.from_sims(bank), beta=20.0)
    assert got2[0, 4] == scores[0, 4]


def test_dual_softmax_hand_case():
    s = np.array([[1.0, 0.0], [1.0, 2.0]])
    before = s.copy()
    out = dual_softmax(s, temperature=1.0, axis=0)
    e = np.exp(s)
    np.testing.assert_allclose(out, s * e / e.sum(axis=0, keepdims=True))
    np.testing.assert_allclose(out[0, 0], 0.5)  # column 0: two equal scores -> prior 1/2
    np.testing.assert_allclose(dual_softmax(s, 0.5, axis=1), s * np.exp(2 * s) / np.exp(2 * s).sum(1, keepdims=True))
    np.testing.assert_array_equal(s, before)
    with pytest.raises(ConfigError):
        dual_softmax(s, temperature=0)


def test_csls_hand_case():
    s = np.array([[0.9, 0.5, 0.1],
                  [0.8, 0.2, 0.3]])
    before = s.copy()
    out = csls(s, k=1)
    r_text = np.array([0.9, 0.8])
    r_item = np.array([0.9, 0.5, 0.3])
    np.testing.assert_allclose(out, 2 * s - r_text[:, None] - r_item[None, :])
    np.testing.assert_allclose(csls(s, k=2)[1, 2], 2 * 0.3 - (0.8 + 0.3) / 2 - (0.3 + 0.1) / 2)
    np.testing.assert_array_equal(s, before)
    with pytest.raises(ConfigError):
        csls(s, k=5)


def test_pipeline_order_records_and_directions():
    rng = np.random.default_rng(5)
    s, bank = rng.uniform(-1, 1, (20, 10)), rng.uniform(-1, 1, (50, 10))
    qb = QueryBank.from_sims(bank, info={"source": "unit"})
    pipe = build_pipeline("qbnorm,dsl", {"qbnorm": {"beta": 10.0}, "dsl": {"temperature": 0.1}}, qb)
    t2i = pipe.dense(s, "t2i")
    # dsl with a bank: the prior comes from the bank at 1 / temperature, applied to qbnorm's output
    q = qb_norm(s, bank, beta=10.0)
    lse = np.log(np.exp(bank / 0.1).sum(0))
    np.testing.assert_allclose(t2i, q * np.exp(q / 0.1 - lse), rtol=1e-6)
    # i2t: qbnorm does not apply; dsl is the transductive softmax over items
    np.testing.assert_allclose(pipe.dense(s, "i2t"), dual_softmax(s, 0.1, axis=1))
    rec = pipe.records()
    assert [r["step"] for r in rec] == ["qbnorm", "dsl"]
    assert rec[0]["querybank"] == {"size": 50, "source": "unit"} and rec[0]["directions"] == ["t2i"]
    assert rec[0]["transductive"] is False and rec[1]["transductive"] is True
    assert rec[1]["transductive_directions"] == ["i2t"]  # t2i prior from the bank, i2t prior over test items
    assert rec[0]["params"] == {"beta": 10.0, "k": 1, "mode": "dynamic", "output": "log"}
    no_bank = build_pipeline("dsl,csls").records()
    assert all(r["transductive"] and r["querybank"] is None for r in no_bank)


def test_pipeline_topk_matches_dense_with_bank():
    rng = np.random.default_rng(6)
    s, bank = rng.uniform(-1, 1, (25, 40)), rng.uniform(-1, 1, (80, 40))
    pipe = build_pipeline("qbnorm,csls", {"csls": {"k": 3}}, QueryBank.from_sims(bank))
    cols = np.argsort(-s, axis=1)[:, :8]
    got = pipe.topk(np.take_along_axis(s, cols, 1), cols)
    dense = pipe.dense(s, "t2i")
    # csls on candidates uses r_text from the candidates: same as dense up to a per-row constant
    want = np.take_along_axis(dense, cols, 1)
    diff = got - want
    np.testing.assert_allclose(diff - diff[:, :1], 0, atol=1e-9)


def test_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs a querybank"):
        build_pipeline("qbnorm").dense(np.ones((2, 2)))
    with pytest.raises(ConfigError, match="Available"):
        build_pipeline("banana")
    with pytest.raises(ConfigError, match="same gallery"):
        qb_norm(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ConfigError, match="top-K"):
        CSLS(2).topk(np.ones((1, 3)), np.zeros((1, 3), int))
    with pytest.raises(ConfigError):
        QBNorm(beta=-1)
    assert RESCORERS.names() == ["csls", "dsl", "qbnorm"]
    f = tmp_path / "bank.txt"
    f.write_text("a cat\n\n a dog \n")
    texts, info = read_bank_texts(str(f))
    assert texts == ["a cat", "a dog"] and info["kind"] == "file" and info["size"] == 2
    with pytest.raises(ConfigError, match="neither"):
        read_bank_texts(str(tmp_path / "missing.txt"))


def test_bank_from_dataset_uses_train_split():
    from conftest import FIXTURES

    texts, info = read_bank_texts(f"coco:{FIXTURES / 'coco_tiny'}")
    assert info["kind"] == "dataset" and info["split"] == "train2017" and len(texts) == 5


# ---------------------------------------------------------------------------------------------------- CLI


def _run(capsys, *argv):
    from conftest import run_cli

    return run_cli(capsys, "-q", *argv)


def test_eval_rescore_records_each_step(capsys):
    from conftest import FIXTURES

    code, out, _ = _run(capsys, "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}:val2017", "--model", "tiny",
                        "--rescore", "qbnorm,csls", "--bank", f"coco:{FIXTURES / 'coco_tiny'}:train2017",
                        "--beta", "10", "--csls-k", "2", "--json")
    res = __import__("json").loads(out)
    assert code == 0
    steps = res["rescore"]
    assert [s["step"] for s in steps] == ["qbnorm", "csls"] and steps == res["fingerprint"]["rescore"]
    assert steps[0]["params"]["beta"] == 10.0 and steps[0]["querybank"]["size"] == 5
    assert steps[0]["querybank"]["split"] == "train2017" and steps[0]["querybank"]["overlap_with_test"] == 0
    assert steps[0]["transductive"] is False  # qbnorm: bank statistics only
    assert steps[1]["transductive_directions"] == ["i2t"]  # csls with a bank: r_text averages over the test items
    assert set(res["before"]) == {"t2i", "i2t"}
    code, out, _ = _run(capsys, "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--model", "tiny",
                        "--rescore", "dsl", "--dsl-temperature", "0.05")
    assert code == 0 and "rescore: dsl(temperature=0.05) [transductive: t2i, i2t]" in out


@pytest.mark.parametrize("argv, message", [
    (["--rescore", "qbnorm"], "needs a querybank"),
    (["--rescore", "zscore"], "Available: csls, dsl, qbnorm"),
    (["--bank", "x.txt"], "--bank needs --rescore"),
    (["--rescore", "qbnorm", "--bank", "coco:/nonexistent"], "COCO folder not found"),
])
def test_eval_rescore_errors(capsys, argv, message):
    from conftest import FIXTURES

    code, _, err = _run(capsys, "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--model", "tiny", *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_search_qbnorm_on_candidates_equals_dense(tmp_path, capsys, tiny_encoder, monkeypatch):
    import json

    from conftest import SAMPLES
    from xmr.index import IndexStore

    monkeypatch.setenv("XMR_CACHE", str(tmp_path / "cache"))
    index = tmp_path / "index"
    assert _run(capsys, "index", str(SAMPLES), "--index", str(index), "--model", "tiny")[0] == 0
    bank_texts = ["a cat", "a cup of coffee", "a rocket", "a horse in a field", "a photo", "a camera man", "text"]
    (tmp_path / "bank.txt").write_text("\n".join(bank_texts) + "\n")
    argv = ["search", "a grey cat", "--index", str(index), "--k", "4", "--rescore", "qbnorm", "--qb-mode",
            "inverted", "--bank", str(tmp_path / "bank.txt"), "--json"]
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    data = json.loads(out)
    assert data["rescore"][0]["querybank"]["kind"] == "file" and data["rescore"][0]["querybank"]["size"] == 7
    # dense reference over every index vector (the default pool of 100 holds the whole index)
    with IndexStore(index) as st:
        ids, vecs = next(st.iter_vectors())
        paths = {i: r.path for i, r in st.get_items(ids.tolist()).items()}
    q = tiny_encoder.encode_text(["a grey cat"])
    dense = qb_norm(q @ vecs.T, tiny_encoder.encode_text(bank_texts) @ vecs.T, beta=20.0, mode="inverted")[0]
    order = np.argsort(-dense, kind="stable")[:4]
    assert [r["path"] for r in data["results"]] == [paths[int(ids[j])] for j in order]
    np.testing.assert_allclose([r["score"] for r in data["results"]], dense[order], rtol=1e-4)
    cached = list((tmp_path / "cache" / "querybank").glob("*.npz"))
    assert len(cached) == 1
    code, out2, _ = _run(capsys, *argv)  # second run: statistics from the cache, same answer
    assert code == 0 and json.loads(out2)["results"] == data["results"]
    code, _, err = _run(capsys, "search", "a cat", "--index", str(index), "--rescore", "dsl")
    assert code == 2 and "needs a querybank" in err


def test_dense_via_topk_equals_search_style_ranking():
    rng = np.random.default_rng(7)
    s, bank = rng.uniform(-1, 1, (15, 30)), rng.uniform(-1, 1, (60, 30))
    pipe = build_pipeline("qbnorm", {"qbnorm": {"mode": "inverted"}}, QueryBank.from_sims(bank))
    out = pipe.dense_via_topk(s, 5)
    cols = np.argsort(-s, axis=1)[:, :5]
    new = pipe.topk(np.take_along_axis(s, cols, 1), cols)
    for q in range(len(s)):
        ranked = list(np.argsort(-out[q], kind="stable"))
        want_top = [int(c) for c in cols[q][np.argsort(-new[q], kind="stable")]]
        assert ranked[:5] == want_top  # candidates re-ordered by the re-scored values
        assert ranked[5:] == [int(j) for j in np.argsort(-s[q], kind="stable") if j not in cols[q]]
    with pytest.raises(ConfigError):
        pipe.dense_via_topk(s, 0)
