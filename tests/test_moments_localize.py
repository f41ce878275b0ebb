"""Temporal localisation (proposals, boundary refinement, span ranking), SQuiDNet (co-occurrence table, save /
load, selective debiasing), its training (checkpoints, resume, metrics) and the synthetic moment world."""
from __future__ import annotations

import numpy as np
import pytest

from xmr.errors import ConfigError, ModelUnavailableError
from xmr.localize import propose, refine, top_spans
from xmr.localize.corpus import corpus_top_spans, submission
from xmr.localize.squidnet import SQuiDNet, cooccurrence_decisions
from xmr.registries import MOMENT_MODELS, load_all
from xmr.synth.moments import MomentWorld
from xmr.train.moments import MomentData, MomentTrainConfig, evaluate, train_squidnet

TIMES = np.array([[t, t + 1.0] for t in range(7)])


def test_proposals_find_the_high_run_first():
    spans = propose([0, 0, 1, 1, 1, 0, 0], TIMES)
    assert (spans[0].start, spans[0].end, spans[0].first, spans[0].last) == (2.0, 5.0, 2, 4)
    assert spans[0].score == pytest.approx(1.0)  # inside 1, the same length outside 0


def test_refinement_moves_a_boundary_into_a_weak_first_clip():
    scores = np.array([0, 0.2, 0.6, 1.0, 0, 0, 0])
    span = propose(scores, TIMES, gammas=(0.5,))[0]
    assert (span.first, span.last) == (2, 3)
    r = refine(span, scores, TIMES)
    # inside mean 0.8, left level 0.2 -> crosses 0.5 a quarter of the way from clip 2's centre (2.5) to clip 1's
    assert r.start == pytest.approx(2.25) and r.end == pytest.approx(4.0 + 0.0, abs=0.51)


def test_top_spans_respect_order_and_length():
    st = np.log([0.1, 0.7, 0.2])
    ed = np.log([0.6, 0.1, 0.3])
    best = top_spans(st, ed, max_len=2, top=10)
    assert [(i, j) for i, j, _ in best][:2] == [(1, 2), (1, 1)]  # (1, 0) is backwards, (0, 2) too long
    assert all(0 <= j - i < 2 for i, j, _ in best)


def test_corpus_top_spans_across_videos_and_submission_shape():
    st = np.log(np.array([[0.1, 0.1, 0.1], [0.5, 0.1, 0.1]]))
    ed = np.log(np.array([[0.1, 0.1, 0.1], [0.1, 0.5, 0.1]]))
    assert corpus_top_spans(st, ed, max_len=3, top=1) == [(1, 0, 1, pytest.approx(2 * np.log(0.5)))]
    times = np.broadcast_to(np.array([[0, 1], [1, 2], [2, 3]], float), (2, 3, 2))
    sub = submission(st[None], ed[None], np.log([[0.5, 0.5]]), times, max_len=3, gt_videos=[0], top=5)
    assert sub["VCMR"][0]["predictions"][0][:3] == [1, 0.0, 2.0]
    assert {p[0] for p in sub["SVMR"][0]["predictions"]} == {0} and len(sub["VR"][0]["predictions"]) == 2


def test_cooccurrence_table_key_predicates():
    table, helps = cooccurrence_decisions([0, 0, 0, 1, 1], [2, 2, 1, 0, 1])
    assert table.tolist() == [[0, 1, 2], [1, 1, 0]]
    assert helps.tolist() == [True, True, False, True, False]  # object 1: a tie, the lower predicate is key
    with pytest.raises(ConfigError):
        cooccurrence_decisions([0, 1], [0])


def test_squidnet_registered_saves_loads_and_checks_shapes(tmp_path):
    load_all("moment_model")
    assert isinstance(MOMENT_MODELS.get("squidnet")(None), SQuiDNet)
    model = SQuiDNet({"dim": 8, "hidden": 8, "max_moment": 3, "seed": 3})
    frames = np.random.default_rng(0).normal(size=(3, 5, 8)).astype(np.float32)
    q = np.random.default_rng(1).normal(size=(2, 8)).astype(np.float32)
    before = model.corpus_logp(frames, q)
    model.save(tmp_path / "m")
    again = SQuiDNet.load(tmp_path / "m").corpus_logp(frames, q)
    for a, b in zip(before, again):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    st, ed, vid = before
    assert st.shape == (2, 3, 5) and vid.shape == (2, 3)
    np.testing.assert_allclose(np.exp(st).sum(-1), 1.0, rtol=1e-5)  # p_st(i | v): a softmax within each video
    np.testing.assert_allclose(np.exp(vid).sum(-1), 1.0, rtol=1e-5)  # p(v): a softmax over the videos
    weighted = SQuiDNet({"dim": 8, "hidden": 8, "max_moment": 3, "seed": 3, "debias_weight": 0.5})
    weighted.load_state_dict(model.state_dict())
    sel = weighted.corpus_logp(frames, q)[0]
    every = weighted.corpus_logp(frames, q, selective=False)[0]
    assert not np.allclose(every, st)  # the optional inference-time subtraction changes the terms
    import torch

    harmful = (weighted.bias_helps(torch.as_tensor(q)) <= 0).numpy()
    for k in range(2):  # selective: only the queries the confounder marks as harmful are debiased
        np.testing.assert_allclose(sel[k], every[k] if harmful[k] else st[k], rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match=r"clip features \(videos, clips, 8\)"):
        model.corpus_logp(frames[..., :4], q)
    with pytest.raises(ModelUnavailableError, match="directory not found"):
        SQuiDNet.load(tmp_path / "none")
    (tmp_path / "m" / "config.json").write_text('{"model": "xmr-squidnet", "hidden": 99999}')
    with pytest.raises(ConfigError, match="hidden is 99999, outside"):
        SQuiDNet.load(tmp_path / "m")


def test_world_plants_the_bias():
    w = MomentWorld(world_seed=0)
    train = w.sample(200, frequent_share=0.8, seed=1)
    assert 0.7 < train.frequent.mean() < 0.9
    test = w.sample(60, frequent_share=0.5, distractors=True, seed=2)
    for q, e in enumerate(test.query_events):
        ev = test.events[e]
        same = [x for x in test.events if x.video == ev.video and x is not ev]
        if not test.frequent[q]:  # a rare query's video also shows the object with its frequent predicate
            assert any(x.obj == ev.obj and x.pred == w.frequent_predicate[ev.obj] for x in same)
    gt = test.ground_truth()
    assert gt[0]["ts"][1] > gt[0]["ts"][0] and {r["type"] for r in gt} == {"v", "vt"}


def test_training_learns_checkpoints_and_resumes(tmp_path):
    w = MomentWorld(world_seed=0, dim=16)
    train = MomentData.from_split(w.sample(40, seed=1, num_frames=16, max_len=5))
    test = MomentData.from_split(w.sample(20, seed=2, num_frames=16, max_len=5))
    cfg = {"hidden": 16, "max_moment": 6}
    untrained = evaluate(SQuiDNet({**cfg, "dim": 16}), test, debias=True)["SVMR"]["0.5-r1"]
    tc = MomentTrainConfig(epochs=2, batch_size=16, lr=5e-3)
    _, hist = train_squidnet(train, cfg, tc, out=tmp_path / "run", eval_data=test)
    assert [h["epoch"] for h in hist] == [1, 2] and "VCMR_0.5-r1" in hist[0]
    assert (tmp_path / "run" / "metrics.csv").is_file() and (tmp_path / "run" / "model.safetensors").is_file()
    with pytest.raises(ConfigError, match="already holds a training run"):
        train_squidnet(train, cfg, tc, out=tmp_path / "run")
    with pytest.raises(ConfigError, match="other settings"):
        train_squidnet(train, {**cfg, "hidden": 8}, tc, out=tmp_path / "run", resume=True)
    tc4 = MomentTrainConfig(epochs=4, batch_size=16, lr=5e-3)
    model, hist = train_squidnet(train, cfg, tc4, out=tmp_path / "run", resume=True, eval_data=test)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]  # epochs 1-2 from the checkpoint, 3-4 trained now
    assert hist[-1]["SVMR_0.5-r1"] > untrained + 10 and hist[-1]["loss"] < hist[0]["loss"]
    loaded = SQuiDNet.load(tmp_path / "run")
    assert evaluate(loaded, test, debias=True)["SVMR"]["0.5-r1"] == hist[-1]["SVMR_0.5-r1"]
