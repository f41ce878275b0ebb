"""match_probability (PCME Eq. 2), PMRP / PM-R@1 (PCME's evaluation) and label-based mAP@K (hashing papers):
hand-computed cases, straightforward reference implementations on random inputs, ties, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

from xmr.errors import ConfigError
from xmr.eval import hamming_similarity, label_map, label_precision_at_k, match_probability, pmrp


# ---- match probability ------------------------------------------------------------------------------------------
def test_match_probability_hand_case():
    q = np.zeros((1, 1, 2))
    g = np.array([[[1.0, 0.0], [3.0, 0.0]]])  # distances 1 and 3
    # a=1, b=2: mean(sigmoid(1), sigmoid(-1)) = 0.5 exactly
    assert match_probability(q, g, 1.0, 2.0)[0, 0] == pytest.approx(0.5, abs=1e-12)
    # a=2, b=1: mean(sigmoid(-1), sigmoid(-5))
    want = (1 / (1 + math.exp(1)) + 1 / (1 + math.exp(5))) / 2
    assert match_probability(q, g, 2.0, 1.0)[0, 0] == pytest.approx(want, abs=1e-12)


def _reference_match_probability(q, g, a, b):
    out = np.zeros((q.shape[0], g.shape[0]))
    for i in range(q.shape[0]):
        for j in range(g.shape[0]):
            vals = [1 / (1 + math.exp(a * math.dist(zq, zg) - b)) for zq in q[i] for zg in g[j]]
            out[i, j] = sum(vals) / len(vals)
    return out


def test_match_probability_equals_reference_and_leaves_inputs_alone():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(4, 3, 5)).astype(np.float32)
    g = rng.normal(size=(6, 2, 5)).astype(np.float32)  # different sample counts are allowed
    q0, g0 = q.copy(), g.copy()
    got = match_probability(q, g, 1.7, 0.3)
    np.testing.assert_allclose(got, _reference_match_probability(q.astype(float), g.astype(float), 1.7, 0.3),
                               atol=1e-6)
    assert got.shape == (4, 6)
    np.testing.assert_array_equal(q, q0)
    np.testing.assert_array_equal(g, g0)


def test_match_probability_bad_input():
    q = np.zeros((2, 3, 4))
    with pytest.raises(ConfigError, match="dims"):
        match_probability(q, np.zeros((2, 3, 5)), 1, 0)
    with pytest.raises(ConfigError, match="a must be > 0"):
        match_probability(q, q, 0, 0)
    with pytest.raises(ConfigError, match=r"\(N, K, D\)"):
        match_probability(np.zeros((2, 4)), q, 1, 0)
    bad = q.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        match_probability(bad, q, 1, 0)


# ---- label mAP@K ------------------------------------------------------------------------------------------------
SIMS = np.array([[0.9, 0.8, 0.7, 0.6], [0.9, 0.8, 0.7, 0.6]])
ITEM_LABELS = [{"A"}, {"B"}, {"A", "B"}, {"C"}]
QUERY_LABELS = [{"A"}, {"C"}]


def test_label_map_hand_case():
    # query A: relevance by rank [1, 0, 1, 0] -> AP@4 = (1/1 + 2/3) / 2; query C: [0, 0, 0, 1] -> AP@4 = 1/4
    assert label_map(SIMS, QUERY_LABELS, ITEM_LABELS, 4) == pytest.approx(((1 + 2 / 3) / 2 + 0.25) / 2)
    # top 2: query A finds only its first relevant (AP 1), query C none (AP 0, still counted)
    assert label_map(SIMS, QUERY_LABELS, ITEM_LABELS, 2) == pytest.approx(0.5)
    assert label_map(SIMS, QUERY_LABELS, ITEM_LABELS, None) == label_map(SIMS, QUERY_LABELS, ITEM_LABELS, 4)
    assert label_precision_at_k(SIMS, QUERY_LABELS, ITEM_LABELS, 2) == pytest.approx((1 / 2 + 0) / 2)


def test_label_map_multi_hot_equals_collections():
    q = np.array([[1, 0, 0], [0, 0, 1]])
    g = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    assert label_map(SIMS, q, g, 4) == label_map(SIMS, QUERY_LABELS, ITEM_LABELS, 4)


def test_label_map_tie_rules():
    flat = np.full((1, 4), 0.5)
    assert label_map(flat, [{"A"}], ITEM_LABELS, 4, ties="index") == pytest.approx((1 + 2 / 3) / 2)
    assert label_map(flat, [{"A"}], ITEM_LABELS, 4, ties="pessimistic") == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert label_map(flat, [{"A"}], ITEM_LABELS, 4, ties="optimistic") == pytest.approx(1.0)


def _reference_map(sims, qlab, glab, k):
    """DHD's Evaluate_mAP, written out in numpy (stable sort; no ties in the random inputs)."""
    total = 0.0
    for i in range(sims.shape[0]):
        rel = (qlab[i] @ glab.T > 0).astype(float)[np.argsort(-sims[i], kind="stable")][:k]
        cnt = int(rel.sum())
        if cnt:
            total += np.mean(np.linspace(1, cnt, cnt) / (np.flatnonzero(rel) + 1.0))
    return total / sims.shape[0]


@pytest.mark.parametrize("k", [1, 5, 50, None])
def test_label_map_equals_reference_on_random_inputs(k):
    rng = np.random.default_rng(1)
    sims = rng.normal(size=(20, 50))
    qlab = (rng.random((20, 6)) < 0.3).astype(int)
    glab = (rng.random((50, 6)) < 0.3).astype(int)
    s0 = sims.copy()
    assert label_map(sims, qlab, glab, k) == pytest.approx(_reference_map(sims, qlab, glab, k or 50))
    np.testing.assert_array_equal(sims, s0)


def test_hamming_similarity_ranks_like_codes():
    q = np.array([[1, -1, 1, 1]])
    g = np.array([[1, -1, 1, 1], [-1, -1, 1, 1], [-1, 1, -1, -1]])
    np.testing.assert_array_equal(hamming_similarity(q, g), [[0, -1, -4]])
    np.testing.assert_array_equal(hamming_similarity((q > 0).astype(int), (g > 0).astype(int)), [[0, -1, -4]])
    with pytest.raises(ConfigError, match="bits"):
        hamming_similarity(q, g[:, :3])
    with pytest.raises(ConfigError, match="binary"):
        hamming_similarity(q * 2, g)


def test_label_metrics_bad_input():
    with pytest.raises(ConfigError, match="larger than the gallery"):
        label_map(SIMS, QUERY_LABELS, ITEM_LABELS, 5)
    with pytest.raises(ConfigError, match=r"item_labels\[1\] is missing"):
        label_map(SIMS, QUERY_LABELS, [{"A"}, None, {"A"}, {"C"}], 2)
    with pytest.raises(ConfigError, match="3 entries but the score matrix has 4 columns"):
        label_map(SIMS, QUERY_LABELS, ITEM_LABELS[:3], 2)
    with pytest.raises(ConfigError, match="same form"):
        label_map(SIMS, np.array([[1], [0]]), ITEM_LABELS, 2)
    with pytest.raises(ConfigError, match="tie rule"):
        label_map(SIMS, QUERY_LABELS, ITEM_LABELS, 2, ties="random")


# ---- PMRP -------------------------------------------------------------------------------------------------------
# images 0 and 1 share label A (distance 0), image 2 has B (distance 2 from both); text t belongs to image t
PM_SIMS = np.array([[0.9, 0.1, 0.5],
                    [0.2, 0.8, 0.3],
                    [0.7, 0.1, 0.6]])
PM_LABELS = [{"A"}, {"A"}, {"B"}]


def test_pmrp_hand_case():
    # t2i per (threshold 0, 1, 2): t0 [.5 .5 1], t1 [.5 .5 1], t2 [0 0 1]; first result plausible except t2 at 0, 1
    # i2t: img0 [.5 .5 1], img1 (t0/t2 tie at 0.1, gallery order) [1 1 1], img2 [1 1 1]
    out = pmrp(PM_SIMS, [0, 1, 2], PM_LABELS)
    assert out["t2i"]["PMRP"] == pytest.approx(100 * 5 / 9)
    assert out["t2i"]["PM-R@1"] == pytest.approx(100 * 7 / 9)
    assert out["i2t"]["PMRP"] == pytest.approx(100 * 8 / 9)
    assert out["i2t"]["PM-R@1"] == pytest.approx(100.0)
    # pessimistic ties: for img1 the unmatched t2 goes before t0 -> [.5 .5 1]
    pess = pmrp(PM_SIMS, [0, 1, 2], PM_LABELS, ties="pessimistic")
    assert pess["i2t"]["PMRP"] == pytest.approx(100 * 7 / 9)


def test_pmrp_leaves_out_unlabelled_items_and_their_texts():
    sims = np.zeros((4, 4))
    sims[:3, :3] = PM_SIMS
    sims[3] = [0.95, 0.0, 0.0, 1.0]
    sims[:, 3] = [0.99, 0.99, 0.99, 1.0]  # the unlabelled image would come first for every text
    out = pmrp(sims, [0, 1, 2, 3], PM_LABELS + [set()])
    ref = pmrp(PM_SIMS, [0, 1, 2], PM_LABELS)
    assert out["t2i"] == ref["t2i"] and out["i2t"] == ref["i2t"]
    assert (out["excluded_items"], out["num_items"], out["num_texts"]) == (1, 3, 3)


def _reference_pmrp(sims, t2i, labels, max_thres=3):
    """PCME's evaluate_plausible_metrics, written out (full ranking, every item labelled, stable sort)."""
    dist = np.abs(labels[:, None, :] - labels[None, :, :]).sum(-1)
    res = {}
    for direction in ("t2i", "i2t"):
        rps, r1s = [], []
        for thr in range(max_thres):
            if direction == "t2i":
                for t in range(sims.shape[0]):
                    m = dist[t2i[t]][np.argsort(-sims[t], kind="stable")] <= thr
                    rps.append(m[: m.sum()].sum() / m.sum())
                    r1s.append(float(m[0]))
            else:
                for i in range(sims.shape[1]):
                    m = dist[i][t2i[np.argsort(-sims[:, i], kind="stable")]] <= thr
                    rps.append(m[: m.sum()].sum() / m.sum())
                    r1s.append(float(m[0]))
        res[direction] = {"PMRP": 100 * np.mean(rps), "PM-R@1": 100 * np.mean(r1s)}
    return res


def test_pmrp_equals_reference_on_random_inputs():
    rng = np.random.default_rng(2)
    labels = (rng.random((15, 5)) < 0.35).astype(int)
    labels[labels.sum(1) == 0, 0] = 1
    t2i = np.repeat(np.arange(15), 3)
    sims = rng.normal(size=(45, 15))
    s0 = sims.copy()
    out = pmrp(sims, t2i, labels)
    ref = _reference_pmrp(sims, t2i, labels)
    for d in ("t2i", "i2t"):
        assert out[d]["PMRP"] == pytest.approx(ref[d]["PMRP"])
        assert out[d]["PM-R@1"] == pytest.approx(ref[d]["PM-R@1"])
    np.testing.assert_array_equal(sims, s0)


def test_pmrp_bad_input():
    with pytest.raises(ConfigError, match="no item has a label"):
        pmrp(PM_SIMS, [0, 1, 2], [set(), set(), set()])
    with pytest.raises(ConfigError, match="item_labels has 2 entries"):
        pmrp(PM_SIMS, [0, 1, 2], PM_LABELS[:2])
    with pytest.raises(ConfigError, match="max_threshold"):
        pmrp(PM_SIMS, [0, 1, 2], PM_LABELS, max_threshold=0)
