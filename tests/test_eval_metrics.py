"""xmr.eval ranking metrics: hand-computed cases per protocol, brute-force cross-checks, bad inputs.

Ranks are 0-based; metrics report MdR / MnR 1-based and R@K in percent. Expected numbers below are worked out by
hand in the comments next to them.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xmr.errors import ConfigError
from xmr.eval import (
    PROTOCOLS,
    Protocol,
    RankRules,
    evaluate_sims,
    list_protocols,
    metrics_from_ranks,
    ranks_i2t,
    ranks_t2i,
)
from xmr.eval.ranks import TIE_RULES

ALL = ["ce", "clip4clip", "clip_benchmark", "standard", "vse", "xpool"]


def metrics(r1, r5, r10, r50, mdr, mnr):
    return {"R@1": r1, "R@5": r5, "R@10": r10, "R@50": r50, "MdR": mdr, "MnR": mnr}


# ----------------------------------------------------------------------------------------------------------
# brute force: sort every query's candidates (what the counting code avoids), then read the rank off
# ----------------------------------------------------------------------------------------------------------
def naive_rank(scores: np.ndarray, is_match: np.ndarray, ties: str):
    """Rank of the best match among ``scores`` (1-D) by sorting; is_match marks the matching candidates."""
    order = np.argsort(-scores, kind="stable")
    s, m = scores[order], is_match[order]
    best = scores[is_match].max()
    block = np.flatnonzero(s == best)  # positions of the tie block holding the best match
    first, last = int(block[0]), int(block[-1])
    if ties == "optimistic":
        return first
    if ties == "pessimistic":  # worst order of the tie block: all non-matches first
        return first + int(np.count_nonzero(~m[first:last + 1]))
    if ties == "average":
        return (first + last) / 2.0
    assert ties == "expand" and m.sum() == 1
    return list(range(first, last + 1))


def naive_t2i(sims, t2i, ties):
    out = []
    for t in range(sims.shape[0]):
        r = naive_rank(sims[t], np.arange(sims.shape[1]) == t2i[t], ties)
        out.extend(r if isinstance(r, list) else [r])
    return np.array(out)


def naive_i2t(sims, t2i, mode, ties):
    items = np.unique(t2i)
    if mode == "best_text":
        return np.array([naive_rank(sims[:, v], t2i == v, ties) for v in items])
    group_max = np.stack([sims[t2i == g].max(axis=0) for g in items])  # (groups, num_items)
    out = []
    for q, v in enumerate(items):
        r = naive_rank(group_max[:, v], np.arange(items.size) == q, ties)
        out.extend(r if isinstance(r, list) else [r])
    return np.array(out)


def random_case(rng, num_texts=37, num_items=11, levels=None, sort=False):
    """Every item gets at least one text; ``levels`` makes integer scores (lots of ties)."""
    t2i = np.concatenate([np.arange(num_items), rng.integers(0, num_items, num_texts - num_items)])
    t2i = np.sort(t2i) if sort else rng.permutation(t2i)
    shape = (num_texts, num_items)
    sims = rng.integers(0, levels, shape).astype(np.float32) if levels else rng.standard_normal(shape)
    return sims, t2i


# ----------------------------------------------------------------------------------------------------------
# ties: a constant score matrix, each preset
# ----------------------------------------------------------------------------------------------------------
CONSTANT_3x3 = {
    # every other candidate ties with the match: rank 2 for everybody
    "standard": metrics(0.0, 100.0, 100.0, 100.0, 3.0, 3.0),
    "xpool": metrics(0.0, 100.0, 100.0, 100.0, 3.0, 3.0),
    "vse": metrics(0.0, 100.0, 100.0, 100.0, 3.0, 3.0),
    "clip_benchmark": metrics(0.0, 100.0, 100.0, 100.0, 3.0, 3.0),
    # tied positions 0, 1, 2 averaged: rank 1 for everybody, and R@1 wants rank exactly 0
    "ce": metrics(0.0, 100.0, 100.0, 100.0, 2.0, 2.0),
    # one entry per tied position: 9 entries 0,0,0,1,1,1,2,2,2 -> R@1 = 3/9, median 1, mean 1
    "clip4clip": metrics(100.0 * 3 / 9, 100.0, 100.0, 100.0, 2.0, 2.0),
}


@pytest.mark.parametrize("protocol", ALL)
def test_constant_matrix_per_protocol(protocol):
    out = evaluate_sims(np.full((3, 3), 0.25), [0, 1, 2], protocol)
    assert out == {"t2i": CONSTANT_3x3[protocol], "i2t": CONSTANT_3x3[protocol]}


def test_constant_matrix_is_never_perfect_under_standard():
    sims = np.zeros((50, 10), dtype=np.float32)
    t2i = np.repeat(np.arange(10), 5)
    out = evaluate_sims(sims, t2i)
    # t2i: the 9 other items tie -> rank 9; i2t: 45 non-matching texts tie -> rank 45
    assert out["t2i"] == metrics(0.0, 0.0, 100.0, 100.0, 10.0, 10.0)
    assert out["i2t"] == metrics(0.0, 0.0, 0.0, 100.0, 46.0, 46.0)


def test_tie_rules_on_one_tied_query():
    # text 0: item 1 scores higher, item 2 ties with the match (item 0)
    sims = np.array([[0.5, 0.9, 0.5, 0.1]])
    assert ranks_t2i(sims, [0], ties="pessimistic").tolist() == [2]
    assert ranks_t2i(sims, [0], ties="optimistic").tolist() == [1]
    assert ranks_t2i(sims, [0], ties="average").tolist() == [1.5]
    assert ranks_t2i(sims, [0], ties="expand").tolist() == [1, 2]


def test_ce_r1_needs_rank_exactly_zero():
    # item 0's two texts tie at the top of its column: no non-matching text is ahead or tied
    sims = np.array([[0.9, 0.0], [0.9, 0.1], [0.2, 0.8]])
    t2i = [0, 0, 1]
    assert ranks_i2t(sims, t2i).tolist() == [0, 0]  # standard: only non-matching ties count
    # CE averages over all tied texts, the item's own included: rank 0.5, which its R@1 (== 0) rejects
    assert ranks_i2t(sims, t2i, ties="average").tolist() == [0.5, 0.0]
    assert evaluate_sims(sims, t2i, "standard")["i2t"]["R@1"] == 100.0
    assert evaluate_sims(sims, t2i, "ce")["i2t"]["R@1"] == 50.0
    assert metrics_from_ranks([0.5, 0.0], r1_exact_zero=False)["R@1"] == 100.0


# ----------------------------------------------------------------------------------------------------------
# medians with an even count
# ----------------------------------------------------------------------------------------------------------
def test_even_count_median_rules():
    ranks = [9, 0, 4, 1]  # sorted 0, 1, 4, 9: middle values 1 and 4
    assert metrics_from_ranks(ranks, median="numpy")["MdR"] == 3.5  # (1 + 4) / 2 + 1
    assert metrics_from_ranks(ranks, median="lower")["MdR"] == 2.0  # 1 + 1 (torch.median)
    assert metrics_from_ranks(ranks, median="floor")["MdR"] == 3.0  # floor(2.5) + 1 (VSE++)
    assert metrics_from_ranks(ranks)["MnR"] == 4.5  # 14 / 4 + 1


def _row_with_rank(num_items, gt, rank):
    """Scores for one text whose match (column gt) has exactly ``rank`` items ahead and no ties."""
    row = np.linspace(-1.0, -0.5, num_items)  # distinct, below the match
    others = [c for c in range(num_items) if c != gt]
    row[others[:rank]] = 2.0 + np.arange(rank)
    row[gt] = 1.0
    return row


def test_even_count_median_per_protocol():
    # 8 texts, 2 per item for items 0..3, 10 items: t2i ranks 0,0,1,1,4,4,9,9 -> middle values 1 and 4
    t2i = np.repeat(np.arange(4), 2)
    wanted = [0, 9, 1, 4, 4, 1, 9, 0]
    sims = np.stack([_row_with_rank(10, g, r) for g, r in zip(t2i, wanted)])
    assert ranks_t2i(sims, t2i).tolist() == wanted
    mdr = {p: evaluate_sims(sims, t2i, p, allow_textless_items=True)["t2i"]["MdR"] for p in ALL}
    assert mdr == {
        "standard": 3.5, "xpool": 3.5, "ce": 3.5, "clip_benchmark": 3.5,  # numpy: 2.5 + 1
        "clip4clip": 2.0,  # several texts per item -> torch.median: 1 + 1
        "vse": 3.0,  # floor(2.5) + 1
    }


def test_clip4clip_uses_numpy_median_with_one_text_per_item():
    t2i = np.arange(4)
    sims = np.stack([_row_with_rank(4, g, r) for g, r in zip(t2i, [0, 1, 2, 3])])
    assert evaluate_sims(sims, t2i, "clip4clip")["t2i"]["MdR"] == 2.5  # 1.5 + 1, not the lower 1 + 1


# ----------------------------------------------------------------------------------------------------------
# several texts per item: best text among all texts vs group-max among items
# ----------------------------------------------------------------------------------------------------------
# texts a0, a1 (item A), b0, b1 (item B), c0, c1 (item C); columns are items A, B, C
SIMS_3x6 = np.array([
    [0.5, 0.7, 0.0],   # a0
    [0.1, 0.6, 0.1],   # a1  (its match A ties with C at 0.1)
    [0.9, 0.4, 0.2],   # b0
    [0.8, 0.65, 0.3],  # b1
    [0.2, 0.1, 0.95],  # c0
    [0.3, 0.2, 0.5],   # c1
])
T2I_3x6 = np.array([0, 0, 1, 1, 2, 2])


def test_best_text_vs_group_max():
    # item A: best text a0 = 0.5; texts ahead b0 0.9, b1 0.8 -> best_text rank 2;
    #         groups: A 0.5, B max(0.9, 0.8), C max(0.2, 0.3) -> only B ahead -> group_max rank 1
    # item B: best text b1 = 0.65; a0 0.7 ahead -> rank 1 both ways;  item C: c0 0.95 first -> rank 0
    assert ranks_i2t(SIMS_3x6, T2I_3x6, mode="best_text").tolist() == [2, 1, 0]
    assert ranks_i2t(SIMS_3x6, T2I_3x6, mode="group_max").tolist() == [1, 1, 0]
    r1 = 100.0 / 3
    assert evaluate_sims(SIMS_3x6, T2I_3x6, "standard")["i2t"] == metrics(r1, 100.0, 100.0, 100.0, 2.0, 2.0)
    assert evaluate_sims(SIMS_3x6, T2I_3x6, "xpool")["i2t"] == metrics(r1, 100.0, 100.0, 100.0, 2.0, 2.0 / 3 + 1)


def test_hand_computed_3x6_all_protocols():
    # t2i ranks: a0 1 (B ahead), a1 1 ahead + 1 tie, b0 1, b1 1, c0 0, c1 0
    r1 = 100.0 * 2 / 6
    std = metrics(r1, 100.0, 100.0, 100.0, 2.0, 5 / 6 + 1)  # ranks 0,0,1,1,1,2
    assert ranks_t2i(SIMS_3x6, T2I_3x6, ties="pessimistic").tolist() == [1, 2, 1, 1, 0, 0]
    assert ranks_t2i(SIMS_3x6, T2I_3x6, ties="average").tolist() == [1, 1.5, 1, 1, 0, 0]
    out = {p: evaluate_sims(SIMS_3x6, T2I_3x6, p)["t2i"] for p in ALL}
    assert out["standard"] == out["xpool"] == out["clip_benchmark"] == std
    assert out["vse"] == std  # floor(1) + 1 = 2: same as numpy here
    assert out["clip4clip"] == std  # several texts per item: lower middle of 0,0,1,1,1,2 is 1 as well
    assert out["ce"] == metrics(r1, 100.0, 100.0, 100.0, 2.0, 4.5 / 6 + 1)  # ranks 0,0,1,1,1,1.5
    i2t = {p: evaluate_sims(SIMS_3x6, T2I_3x6, p)["i2t"] for p in ALL}
    # clip4clip: group-max ranks 1, 1, 0 with no ties -> one entry per query
    assert i2t["clip4clip"] == i2t["xpool"] == metrics(100.0 / 3, 100.0, 100.0, 100.0, 2.0, 2.0 / 3 + 1)
    for p in ("standard", "ce", "vse", "clip_benchmark"):  # best text: ranks 2, 1, 0
        assert i2t[p] == metrics(100.0 / 3, 100.0, 100.0, 100.0, 2.0, 2.0), p


# ----------------------------------------------------------------------------------------------------------
# R@K boundaries, output types
# ----------------------------------------------------------------------------------------------------------
def test_recall_at_k_boundaries():
    out = metrics_from_ranks([0, 4, 5, 9, 10, 49, 50])  # rank K-1 counts for R@K, rank K does not
    assert out["R@1"] == 100.0 / 7
    assert out["R@5"] == 100.0 * 2 / 7
    assert out["R@10"] == 100.0 * 4 / 7
    assert out["R@50"] == 100.0 * 6 / 7
    assert metrics_from_ranks([0, 4, 5], ks=(2, 6)) == {"R@2": 100.0 / 3, "R@6": 100.0, "MdR": 5.0, "MnR": 4.0}


def test_output_keys_and_python_floats():
    out = evaluate_sims(SIMS_3x6, T2I_3x6)
    for direction in ("t2i", "i2t"):
        assert list(out[direction]) == ["R@1", "R@5", "R@10", "R@50", "MdR", "MnR"]
        assert all(type(v) is float for v in out[direction].values())


# ----------------------------------------------------------------------------------------------------------
# counting in blocks == sorting everything
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [3, None])
@pytest.mark.parametrize("sort", [False, True])
def test_chunked_counting_matches_naive_sort(levels, sort):
    rng = np.random.default_rng(7 + (levels or 0) + sort)
    sims, t2i = random_case(rng, levels=levels, sort=sort)
    for ties in TIE_RULES:
        want = naive_t2i(sims, t2i, ties)
        for chunk in (1, 4, None):
            np.testing.assert_array_equal(ranks_t2i(sims, t2i, ties=ties, chunk_size=chunk), want)
        for mode in ("best_text", "group_max"):
            if ties == "expand" and mode == "best_text":
                continue
            want = naive_i2t(sims, t2i, mode, ties)
            for chunk in (1, 4, None):
                got = ranks_i2t(sims, t2i, mode=mode, ties=ties, chunk_size=chunk)
                np.testing.assert_array_equal(got, want, err_msg=f"{mode} {ties} chunk={chunk}")


@pytest.mark.parametrize("protocol", ALL)
def test_evaluate_sims_equals_metrics_of_ranks(protocol):
    """The histogram path for 'expand' and the block sizes must not change any number."""
    rng = np.random.default_rng(3)
    sims, t2i = random_case(rng, num_texts=40, num_items=12, levels=4)
    proto = PROTOCOLS.get(protocol)
    rules = proto.t2i_rules(True)
    want_t2i = metrics_from_ranks(naive_t2i(sims, t2i, rules.ties), median=rules.median,
                                  r1_exact_zero=rules.r1_exact_zero)
    want_i2t = metrics_from_ranks(naive_i2t(sims, t2i, proto.i2t_mode, proto.i2t.ties), median=proto.i2t.median,
                                  r1_exact_zero=proto.i2t.r1_exact_zero)
    for chunk in (1, 5, None):
        assert evaluate_sims(sims, t2i, protocol, chunk_size=chunk) == {"t2i": want_t2i, "i2t": want_i2t}


# ----------------------------------------------------------------------------------------------------------
# the presets against small restatements of each reference's own procedure
# ----------------------------------------------------------------------------------------------------------
def _positions_of_equal(sorted_desc, value):
    return np.flatnonzero(sorted_desc == value)


def _clip4clip_square(x):
    """CLIP4Clip compute_metrics: sort each row, every position equal to the diagonal score is an entry."""
    entries = np.concatenate([_positions_of_equal(np.sort(row)[::-1], row[i]) for i, row in enumerate(x)])
    return {"R@1": 100.0 * np.count_nonzero(entries == 0) / entries.size,
            "MdR": float(np.median(entries)) + 1, "MnR": float(np.mean(entries)) + 1}


def test_clip4clip_matches_reference_procedure_with_ties():
    rng = np.random.default_rng(11)
    sims = rng.integers(0, 3, (9, 9)).astype(np.float64)  # one text per item, many ties
    out = evaluate_sims(sims, np.arange(9), "clip4clip")
    for direction, x in (("t2i", sims), ("i2t", sims.T)):
        ref = _clip4clip_square(x)
        assert {k: out[direction][k] for k in ref} == ref
    # several texts per item: i2t ranks items by their best text (reference: max over the text axis)
    sims, t2i = random_case(rng, num_texts=20, num_items=6, levels=3, sort=True)
    group_max = np.stack([sims[t2i == g].max(axis=0) for g in range(6)])  # [group, item]
    ref = _clip4clip_square(group_max.T)  # rows = query items, columns = candidate groups
    got = evaluate_sims(sims, t2i, "clip4clip")["i2t"]
    assert {k: got[k] for k in ref} == ref


def test_ce_matches_reference_procedure_with_ties():
    rng = np.random.default_rng(5)
    per_item, num_items = 3, 7
    sims = rng.integers(0, 4, (per_item * num_items, num_items)).astype(np.float64)
    t2i = np.arange(sims.shape[0]) // per_item  # CE's layout: consecutive texts per video
    # t2v: mean of the positions (ascending distance) that equal the match's distance
    t2v = np.array([_positions_of_equal(np.sort(-row), -row[t2i[t]]).mean() for t, row in enumerate(sims)])
    # v2t: same per caption of the video against all captions, then the best (smallest) of its captions
    v2t = np.array([min(_positions_of_equal(np.sort(-sims[:, v]), -sims[t, v]).mean()
                        for t in np.flatnonzero(t2i == v)) for v in range(num_items)])
    out = evaluate_sims(sims, t2i, "ce")
    for direction, ranks in (("t2i", t2v), ("i2t", v2t)):
        n = ranks.size
        assert out[direction]["R@1"] == 100 * float(np.sum(ranks == 0)) / n
        assert out[direction]["R@5"] == 100 * float(np.sum(ranks < 5)) / n
        assert out[direction]["MdR"] == np.median(ranks) + 1
        assert out[direction]["MnR"] == pytest.approx(np.mean(ranks) + 1, rel=1e-15)


def test_tie_free_references():
    """Without ties every reference's argsort position is well defined; the presets must agree with it."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    sims, t2i = random_case(rng, num_texts=30, num_items=10, sort=True)  # continuous scores: no ties
    pos_t2i = np.array([np.flatnonzero(np.argsort(-row) == t2i[t])[0] for t, row in enumerate(sims)])
    best_text = np.array([min(np.flatnonzero(np.argsort(-sims[:, v]) == t)[0] for t in np.flatnonzero(t2i == v))
                          for v in range(10)])
    group_max = np.stack([sims[t2i == g].max(axis=0) for g in range(10)]).T  # [query item, group]
    pos_group = np.array([np.flatnonzero(np.argsort(-row) == v)[0] for v, row in enumerate(group_max)])

    vse = evaluate_sims(sims, t2i, "vse")
    assert vse["t2i"]["MdR"] == np.floor(np.median(pos_t2i)) + 1
    assert vse["i2t"]["MdR"] == np.floor(np.median(best_text)) + 1
    assert vse["i2t"]["MnR"] == best_text.mean() + 1

    c4c = evaluate_sims(sims, t2i, "clip4clip")  # 3 texts per item -> torch.median for t2i
    assert c4c["t2i"]["MdR"] == float(torch.median(torch.from_numpy(pos_t2i) + 1))
    xp = evaluate_sims(sims, t2i, "xpool")
    assert xp["t2i"]["MdR"] == np.median(pos_t2i) + 1
    assert xp["i2t"]["MnR"] == c4c["i2t"]["MnR"] == pos_group.mean() + 1

    # CLIP_benchmark: a query is a hit if any match is in torch.topk(k); reported there as a fraction
    cb = evaluate_sims(sims, t2i, "clip_benchmark")
    scores = torch.from_numpy(sims)
    for k in (1, 5):
        top_items = torch.topk(scores, k, dim=1).indices.numpy()
        hit_t2i = np.mean([t2i[t] in top_items[t] for t in range(30)])
        top_texts = torch.topk(scores.T, k, dim=1).indices.numpy()
        hit_i2t = np.mean([np.any(t2i[top_texts[v]] == v) for v in range(10)])
        assert cb["t2i"][f"R@{k}"] == pytest.approx(100 * hit_t2i)
        assert cb["i2t"][f"R@{k}"] == pytest.approx(100 * hit_i2t)


# ----------------------------------------------------------------------------------------------------------
# inputs: never modified, torch accepted, bad ones rejected
# ----------------------------------------------------------------------------------------------------------
def test_inputs_are_not_modified():
    rng = np.random.default_rng(0)
    sims, t2i = random_case(rng, levels=3)
    sims_before, t2i_before = sims.copy(), t2i.copy()
    sims.flags.writeable = False  # any write would raise
    t2i.flags.writeable = False
    for p in ALL:
        evaluate_sims(sims, t2i, p, chunk_size=4)
    assert np.array_equal(sims, sims_before) and np.array_equal(t2i, t2i_before)
    assert not isinstance(evaluate_sims(sims, t2i), np.ndarray)


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    sims, t2i = random_case(rng, levels=5)
    want = {p: evaluate_sims(sims, t2i, p) for p in ALL}
    tensor = torch.tensor(sims, requires_grad=True)
    before = tensor.detach().clone()
    for p in ALL:
        assert evaluate_sims(tensor, torch.from_numpy(t2i), p) == want[p]
    assert torch.equal(tensor.detach(), before)
    # non-contiguous (a transposed view) and half precision: integer levels are exact in bfloat16
    assert evaluate_sims(tensor.detach().T.contiguous().T, t2i) == want["standard"]
    assert evaluate_sims(tensor.detach().to(torch.bfloat16), t2i) == want["standard"]


def test_fortran_ordered_input():
    rng = np.random.default_rng(4)
    sims, t2i = random_case(rng, levels=4)
    assert evaluate_sims(np.asfortranarray(sims), t2i, chunk_size=3) == evaluate_sims(sims, t2i)


@pytest.mark.parametrize(
    "sims, t2i, match",
    [
        (np.zeros((3, 2)), [0, 1], "3 rows"),
        (np.zeros((2, 2)), [0, 2], "out of range"),
        (np.zeros((2, 2)), [-1, 0], "out of range"),
        (np.zeros((2, 2)), [0.0, 1.0], "integer"),
        (np.zeros((2, 2)), [[0, 1]], "1-D"),
        (np.zeros(4), [0, 1], "2-D"),
        (np.zeros((0, 3)), [], "empty"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), [0, 1], "NaN"),
        (np.array([[1, 0], [0, 1]], dtype=complex), [0, 1], "real"),
        (np.zeros((2, 3)), [0, 1], "no text"),
    ],
)
def test_bad_inputs_raise_config_error(sims, t2i, match):
    with pytest.raises(ConfigError, match=match):
        evaluate_sims(sims, t2i)


def test_textless_items_can_be_left_out_of_i2t():
    sims = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.9]])  # item 2 has no text: a distractor
    with pytest.raises(ConfigError, match="allow_textless_items"):
        ranks_i2t(sims, [0, 1])
    assert ranks_t2i(sims, [0, 1]).tolist() == [0, 1]  # the distractor beats text 1's match
    assert ranks_i2t(sims, [0, 1], allow_textless_items=True).tolist() == [0, 0]
    assert ranks_i2t(sims, [0, 1], mode="group_max", allow_textless_items=True).tolist() == [0, 0]
    out = evaluate_sims(sims, [0, 1], allow_textless_items=True)
    assert out["t2i"]["R@1"] == 50.0 and out["i2t"]["R@1"] == 100.0


def test_bad_options_raise_config_error():
    sims = np.eye(3)
    with pytest.raises(ConfigError, match="Available: ce, clip4clip"):
        evaluate_sims(sims, [0, 1, 2], "clip4clp")
    with pytest.raises(ConfigError, match="tie rule"):
        ranks_t2i(sims, [0, 1, 2], ties="random")
    with pytest.raises(ConfigError, match="group_max"):
        ranks_i2t(sims, [0, 1, 2], ties="expand")
    with pytest.raises(ConfigError, match="mode"):
        ranks_i2t(sims, [0, 1, 2], mode="mean")
    with pytest.raises(ConfigError, match="median"):
        metrics_from_ranks([0, 1], median="upper")
    with pytest.raises(ConfigError, match="chunk_size"):
        ranks_t2i(sims, [0, 1, 2], chunk_size=0)
    with pytest.raises(ConfigError, match="non-empty"):
        metrics_from_ranks([])
    with pytest.raises(ConfigError, match="ks must be positive"):
        metrics_from_ranks([0, 1], ks=(0, 5))
    with pytest.raises(ConfigError, match="group_max"):
        Protocol("bad", t2i=RankRules(), i2t=RankRules(ties="expand"))


# ----------------------------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------------------------
def test_protocol_registry():
    assert list_protocols() == ALL
    proto = PROTOCOLS.get("ce")
    assert proto.t2i == RankRules(ties="average", median="numpy", r1_exact_zero=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        proto.i2t_mode = "group_max"
    assert all(entry.help for entry in PROTOCOLS)


def test_custom_protocol_object():
    optimistic = Protocol("optimistic", t2i=RankRules(ties="optimistic"), i2t=RankRules(ties="optimistic"))
    out = evaluate_sims(np.ones((4, 4)), np.arange(4), optimistic)
    assert out["t2i"] == out["i2t"] == metrics(100.0, 100.0, 100.0, 100.0, 1.0, 1.0)  # why xmr doesn't
