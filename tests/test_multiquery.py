"""Multi-query retrieval: fusion hand cases, the grouping rule, the learned weighting, evaluation and search."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FIXTURES, SAMPLES
from xmr.cli import main
from xmr.errors import ConfigError
from xmr.multiquery import QueryWeighting, fuse_sims, group_captions, train_query_weighting


def unit(*v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


Q = np.stack([[unit(1, 0), unit(0, 1)]])  # one group of two queries (1, 2, 2)
G = np.stack([unit(1, 0), unit(1, 1), unit(-1, 0)])  # three items


def test_fusion_hand_cases():
    before = Q.copy()
    s = Q[0] @ G.T  # per-query sims (2, 3): [[1, .707, -1], [0, .707, 0]]
    np.testing.assert_allclose(fuse_sims(Q, G, "mean-sim"), [s.mean(0)])
    np.testing.assert_allclose(fuse_sims(Q, G, "max"), [s.max(0)])
    np.testing.assert_allclose(fuse_sims(Q, G, "mean-emb"), [unit(1, 1) @ G.T])
    np.testing.assert_allclose(fuse_sims(Q, G, "mean-emb")[0, 1], 1.0)
    # mean-sim and mean-emb rank a group's items identically (mean of dots = dot with the mean)
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((5, 3, 8)), rng.standard_normal((20, 8))
    np.testing.assert_array_equal(np.argsort(-fuse_sims(q, g, "mean-sim"), 1),
                                  np.argsort(-fuse_sims(q, g, "mean-emb"), 1))
    # padding mask: the masked query is ignored
    np.testing.assert_allclose(fuse_sims(Q, G, "max", mask=[[True, False]]), [s[0]])
    np.testing.assert_array_equal(Q, before)
    with pytest.raises(ConfigError, match="Available"):
        fuse_sims(Q, G, "median")
    with pytest.raises(ConfigError, match="learned"):
        fuse_sims(Q, G, "learned")


def test_grouping_rule():
    offsets = np.array([0, 5, 7, 8, 12])  # items with 5, 2, 1, 4 captions
    groups, items = group_captions(offsets, 2)
    np.testing.assert_array_equal(groups, [[0, 1], [2, 3], [5, 6], [8, 9], [10, 11]])
    np.testing.assert_array_equal(items, [0, 0, 1, 3, 3])  # caption 4 and item 2 (one caption) have no group
    groups, items = group_captions(offsets, 1)
    assert len(groups) == 12
    with pytest.raises(ConfigError, match="no item"):
        group_captions(offsets, 6)


def test_learned_weighting_starts_as_mean_emb_trains_and_round_trips(tmp_path):
    from xmr.multiquery import QueryWeightingConfig

    rng = np.random.default_rng(0)
    items = rng.standard_normal((60, 16))
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    # 4 captions per item: 2 close to the item, 2 pure noise -> agreement with the group tells them apart
    caps = []
    for v in items:
        for noisy in (False, False, True, True):
            c = rng.standard_normal(16) if noisy else v + 0.3 * rng.standard_normal(16)
            caps.append(c / np.linalg.norm(c))
    caps = np.asarray(caps, dtype=np.float32)
    offsets = np.arange(0, 241, 4)
    groups, gi = group_captions(offsets, 4)
    # a fresh (zero-initialised) weighting is exactly mean-emb
    fresh = QueryWeighting(QueryWeightingConfig(dim=16))
    np.testing.assert_allclose(fuse_sims(caps[groups], items, "learned", model=fresh),
                               fuse_sims(caps[groups], items, "mean-emb"), rtol=1e-5, atol=1e-6)
    model = train_query_weighting(caps, offsets, items, n=4, epochs=20, seed=0, encoder="unit")
    learned = fuse_sims(caps[groups], items, "learned", model=model)
    r1 = lambda s: (s.argmax(1) == gi).mean()  # noqa: E731
    assert r1(learned) > r1(fuse_sims(caps[groups], items, "mean-emb")) + 0.1  # 0.68 vs 0.52
    assert model.info["n"] == 4 and model.info["items"] == 60
    model.save(tmp_path / "mq")
    cfg = json.loads((tmp_path / "mq" / "config.json").read_text())
    assert cfg["model"] == "xmr-query-weighting" and cfg["dim"] == 16
    assert (tmp_path / "mq" / "model.safetensors").is_file()
    np.testing.assert_allclose(fuse_sims(caps[groups], items, f"learned:{tmp_path / 'mq'}"), learned, rtol=1e-6)


def test_eval_queries_per_target(capsys):
    code = main(["-q", "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--model", "tiny",
                 "--queries-per-target", "2", "--fuse", "max", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0
    mq = res["multi_query"]
    assert mq == res["fingerprint"]["multi_query"]
    # 4 items x 5 captions -> 2 groups each, 1 caption left over per item
    assert mq["num_queries"] == 8 and mq["captions_dropped"] == 4 and mq["fuse"] == "max"
    assert set(res["t2i"]) >= {"R@1", "MdR"} and "before" in res


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory):
    index = tmp_path_factory.mktemp("mq") / "index"
    assert main(["-q", "index", str(SAMPLES), "--index", str(index), "--model", "tiny"]) == 0
    return index


def test_search_several_queries(tiny_index, capsys, tiny_encoder):
    from xmr.index import IndexStore

    code = main(["-q", "search", "a cat", "a kitten on a chair", "--index", str(tiny_index), "--k", "3", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["query"] == ["a cat", "a kitten on a chair"] and data["fuse"] == "mean-sim"
    # same as scoring every index vector with the fused query
    with IndexStore(tiny_index) as st:
        ids, vecs = next(st.iter_vectors())
        paths = {i: r.path for i, r in st.get_items(ids.tolist()).items()}
    q = tiny_encoder.encode_text(["a cat", "a kitten on a chair"])
    for fuse in ("mean-sim", "max"):
        code = main(["-q", "search", "a cat", "a kitten on a chair", "--index", str(tiny_index), "--k", "3",
                     "--fuse", fuse, "--json"])
        got = json.loads(capsys.readouterr().out)["results"]
        want = fuse_sims(q[None], vecs, fuse)[0]
        order = np.argsort(-want, kind="stable")[:3]
        assert [r["path"] for r in got] == [paths[int(ids[j])] for j in order]
        np.testing.assert_allclose([r["score"] for r in got], want[order], rtol=1e-5)
    # one query keeps the plain JSON shape
    main(["-q", "search", "a cat", "--index", str(tiny_index), "--k", "2", "--json"])
    one = json.loads(capsys.readouterr().out)
    assert set(one) == {"query", "model", "stages", "results"} and one["query"] == "a cat"
    assert [s["stage"] for s in one["stages"]] == ["first-stage", "moments"] and one["stages"][0]["depth"] == 2
