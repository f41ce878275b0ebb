"""Queries that talk back: Ask&Confirm (proposals, answers, fusion) and Rocchio relevance feedback, in the library,
the CLI and the REST API, with the bad inputs the issue names (unknown detail, id not in the index / results,
empty query): clear errors, state unchanged."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli
from xmr.errors import ConfigError
from xmr.retrieval import Query
from xmr.retrieval.interactive import (AskConfirmConfig, DetailBank, RocchioConfig, check_answers, propose,
                                       refine_query, rocchio)
from xmr.retrieval.interactive.askconfirm import binary_entropy, mentioned, posterior


# ---- Rocchio ---------------------------------------------------------------------------------------------------
def test_rocchio_hand_computed():
    q = np.array([1.0, 0.0, 0.0])
    good = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    bad = np.array([[1.0, 0.0, 0.0]])
    v = rocchio(q, good, bad)  # 1*q + 0.75*(0, .5, .5) - 0.15*(1, 0, 0) = (0.85, 0.375, 0.375)
    want = np.array([0.85, 0.375, 0.375]) / np.linalg.norm([0.85, 0.375, 0.375])
    np.testing.assert_allclose(v, want, rtol=1e-6)
    np.testing.assert_allclose(rocchio(q, good[:0], bad[:0]), q)  # no feedback: the query itself
    v2 = rocchio(q, good, bad, RocchioConfig(alpha=0.0, beta=1.0, gamma=0.0))
    np.testing.assert_allclose(v2, [0, 2 ** -0.5, 2 ** -0.5], atol=1e-7)


def test_rocchio_refuses_cancelled_query_and_bad_weights():
    with pytest.raises(ConfigError, match="cancelled"):
        rocchio(np.array([1.0, 0.0]), np.zeros((0, 2)), np.array([[1.0, 0.0]]), RocchioConfig(1.0, 0.0, 1.0))
    with pytest.raises(ConfigError):
        RocchioConfig(alpha=-1.0)


# ---- Ask&Confirm policy ------------------------------------------------------------------------------------------
def _bank():
    # 4-d space; details: "red" = e0, "round" = e1, "big" = e2 ; collection = the 8 corners of {0,1}^3 (+ e3)
    gallery = np.array([[a, b, c, 1.0] for a in (0, 1) for b in (0, 1) for c in (0, 1)], np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    return DetailBank.build(("red", "round", "big"), np.eye(4, dtype=np.float32)[:3], gallery,
                            AskConfirmConfig(presence_quantile=0.5)), gallery


def test_proposal_splits_the_candidates():
    bank, gallery = _bank()
    # candidates: all red (e0 = 1), half round, all not big -> "round" splits them, "red"/"big" do not
    cands = gallery[[4, 6]]  # (1,0,0), (1,1,0)
    props = propose(bank, cands, np.array([0.5, 0.5]), AskConfirmConfig(proposals=3))
    assert props[0].detail == "round"
    assert props[0].gain == pytest.approx(1.0, abs=0.02) and props[0].p_yes == pytest.approx(0.5, abs=0.02)
    assert props[0].gain > props[1].gain + 0.5  # the others are (nearly) settled by every candidate
    # already named by the query, or answered: not proposed again
    assert "round" not in [p.detail for p in propose(bank, cands, np.array([0.5, 0.5]), AskConfirmConfig(),
                                                    query_texts=["a round thing"])]
    assert "round" not in [p.detail for p in propose(bank, cands, np.array([0.5, 0.5]), AskConfirmConfig(),
                                                    exclude=["Round"])]


def test_policy_pieces_hand_computed():
    assert binary_entropy(np.array([0.5]))[0] == pytest.approx(1.0)
    assert binary_entropy(np.array([0.0]))[0] == pytest.approx(0.0, abs=1e-9)
    p = posterior(np.array([1.0, 0.0]), 1.0)  # z = (+1, -1): softmax -> e^2 / (1 + e^2)
    assert p[0] == pytest.approx(np.e ** 2 / (1 + np.e ** 2))
    assert mentioned("teddy bear", ["a Teddy bear on a bed"]) and not mentioned("bear", ["a dog"])


def test_refine_query_fusions():
    q = Query.text("a dog")
    r = refine_query(q, ["frisbee", "grass"], ["cat"])
    assert [(t.value, t.weight) for t in r.terms] == [("a dog, frisbee, grass", 1.0), ("cat", -0.5)]
    r = refine_query(q, ["frisbee"], [], AskConfirmConfig(fuse="terms", confirm_weight=0.5))
    assert [(t.value, t.weight) for t in r.terms] == [("a dog", 1.0), ("frisbee", 0.5)]
    r = refine_query(q, [], ["cat"], AskConfirmConfig(reject_weight=0.0))
    assert [(t.value, t.weight) for t in r.terms] == [("a dog", 1.0)]
    assert q.terms[0].value == "a dog"  # unchanged
    with pytest.raises(ConfigError, match="both confirmed and rejected"):
        refine_query(q, ["cat"], ["Cat"])
    with pytest.raises(ConfigError, match="empty detail"):
        refine_query(q, [" "], [])
    with pytest.raises(ConfigError, match="exactly one positive text"):
        refine_query(Query.image("x.png"), ["cat"], [])


def test_unknown_detail_is_refused():
    bank, _ = _bank()
    assert check_answers(["RED"], ["big"], bank) == (("red",), ("big",))  # spelled as the bank spells it
    with pytest.raises(ConfigError, match="unknown detail 'blue'"):
        check_answers(["blue"], [], bank)


# ---- CLI -------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def samples_index(tmp_path_factory, concept_encoder):
    from test_serve_api import concept_samples_index

    return concept_samples_index(tmp_path_factory, concept_encoder)


def _ids(capsys, index, *extra):
    import json

    code, out, _ = run_cli(capsys, "search", "an animal", "--index", str(index), "--json", *extra)
    assert code == 0
    return json.loads(out)


def test_cli_ask_confirm_reject(capsys, samples_index):
    d = _ids(capsys, samples_index, "--ask", "-k", "3")
    props = [p["detail"] for p in d["proposals"]]
    assert len(props) == 5 and len(set(props)) == 5
    code, out, _ = run_cli(capsys, "search", "an animal", "--index", str(samples_index), "--ask", "-k", "3")
    assert code == 0 and "details to confirm or reject" in out
    # confirming "tabby cat" brings the cat photo to the top; the answered detail is not proposed again
    d = _ids(capsys, samples_index, "--ask", "--confirm", "tabby cat", "-k", "3")
    assert d["results"][0]["path"].endswith("chelsea.png")
    assert d["query"] == {"query": "an animal", "confirmed": ["tabby cat"], "rejected": []}
    assert "tabby cat" not in [p["detail"] for p in d["proposals"]]
    d = _ids(capsys, samples_index, "--reject", "tabby cat", "-k", "8")
    assert not d["results"][0]["path"].endswith("chelsea.png")


def test_cli_feedback_moves_results(capsys, samples_index):
    base = _ids(capsys, samples_index, "-k", "8")
    by_path = {r["path"].rsplit("/", 1)[-1]: r["id"] for r in base["results"]}
    cat, top = by_path["chelsea.png"], base["results"][0]["id"]
    assert top != cat
    d = _ids(capsys, samples_index, "-k", "3", "--good", str(cat), "--bad", str(top))
    assert d["results"][0]["id"] == cat
    assert d["query"]["feedback"] == {"good": [cat], "bad": [top], "alpha": 1.0, "beta": 0.75, "gamma": 0.15}


@pytest.mark.parametrize("argv, msg", [
    (("--confirm", "no such detail zz"), "unknown detail"),
    (("--good", "999999"), "not in the index"),
    (("--good", "1", "--bad", "1"), "both good and bad"),
    (("--good", "1", "--ask"), "one at a time"),
    (("--vocab", "coco"), "--vocab needs"),
    (("--ask", "--vocab", "/no/such/file.txt"), "detail vocabulary"),
])
def test_cli_bad_interactive_input(capsys, samples_index, argv, msg):
    code, out, err = run_cli(capsys, "search", "an animal", "--index", str(samples_index), *argv)
    assert code == 2 and msg in err and "Traceback" not in err and out == ""


def test_cli_empty_query_with_ask(capsys, samples_index):
    code, _, err = run_cli(capsys, "search", "  ", "--index", str(samples_index), "--ask")
    assert code == 2 and "empty" in err
