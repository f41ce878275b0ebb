"""Fine-grained re-rankers: Sinkhorn (marginals, a hand case), IMRAM (K=1 is one attention step computed by hand, the
memory update), WCGL (Wasserstein graph embedding, discriminant loss), the shared training loop (learning, checkpoint
/ resume, refusals) and the bad-input errors (an encoder without tokens, a token width that does not fit)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import FIXTURES
from xmr.cli import main
from xmr.encoders.base import Capabilities
from xmr.errors import ConfigError
from xmr.rerank import create_reranker
from xmr.rerank.imram import IMRAMConfig, IMRAMMatcher, attend
from xmr.rerank.ot import sinkhorn, uniform_mass, wasserstein
from xmr.rerank.tokens import TokenReranker, check_token_encoder
from xmr.rerank.training import MatcherTrainConfig, group_loss, train_matcher
from xmr.rerank.wcgl import WCGLConfig, WCGLMatcher


# ------------------------------------------------------------------------------------------------- Sinkhorn


def test_sinkhorn_marginals_and_padding():
    g = torch.Generator().manual_seed(0)
    cost = torch.rand(3, 4, 5, generator=g) * 2
    amask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 1, 1]], dtype=torch.bool)
    bmask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    a, b = uniform_mass(amask), uniform_mass(bmask)
    p = sinkhorn(cost, a, b, eps=0.1, iters=200)
    torch.testing.assert_close(p.sum(2), a, atol=1e-5, rtol=0)  # rows
    torch.testing.assert_close(p.sum(1), b, atol=1e-6, rtol=0)  # columns (the last update)
    assert (p[~amask] == 0).all() and (p.transpose(1, 2)[~bmask] == 0).all()  # padding carries nothing
    assert (p >= 0).all()


def test_sinkhorn_hand_case_assignment():
    # two points each; matching i -> i costs 0, crossing costs 1: the plan is the diagonal, the cost ~0
    cost = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    half = torch.full((1, 2), 0.5)
    p = sinkhorn(cost, half, half, eps=0.01, iters=100)
    torch.testing.assert_close(p, torch.tensor([[[0.5, 0.0], [0.0, 0.5]]]), atol=1e-6, rtol=0)
    # large eps -> the independent coupling a b^T
    torch.testing.assert_close(sinkhorn(cost, half, half, eps=100.0, iters=50), torch.full((1, 2, 2), 0.25),
                               atol=2e-3, rtol=0)
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    ones = torch.ones(1, 2, dtype=torch.bool)
    assert float(wasserstein(x, ones, x.flip(1), ones, eps=0.01)) < 1e-4  # same set in another order: W = 0
    # against -x: the opposite points cost 2, the orthogonal ones 1; the plan takes the orthogonal ones
    assert float(wasserstein(x, ones, -x, ones, eps=0.01)) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ConfigError):
        sinkhorn(cost, half, half, eps=0.0)


# ---------------------------------------------------------------------------------------------------- IMRAM


def _single_attention_step_by_hand(t, tmask, v, smooth):
    """SCAN-style t->v score, written out with loops: mean over words of cos(t_i, sum_j a_ij v_j)."""
    n, m = t.shape[0], v.shape[0]
    real = [i for i in range(n) if tmask[i]]
    s = np.zeros((n, m))
    for i in real:
        for j in range(m):
            s[i, j] = max(0.0, float(t[i] @ v[j] / np.linalg.norm(t[i]) / np.linalg.norm(v[j])))
    for j in range(m):
        s[:, j] /= np.sqrt(sum(s[i, j] ** 2 for i in real) + 1e-16)
    cos = []
    for i in real:
        w = np.exp(smooth * s[i]) / np.exp(smooth * s[i]).sum()
        c = (w[:, None] * v).sum(0)
        cos.append(float(t[i] @ c / np.linalg.norm(t[i]) / np.linalg.norm(c)))
    return float(np.mean(cos))


def test_imram_one_step_is_one_attention_step():
    cfg = IMRAMConfig(width=8, dim=6, steps=1, directions="text", smooth=4.0, seed=1)
    m = IMRAMMatcher(cfg)
    g = torch.Generator().manual_seed(0)
    text, image = torch.randn(2, 5, 8, generator=g), torch.randn(2, 4, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    got = m(text, mask, image).detach().numpy()
    with torch.no_grad():
        t = torch.nn.functional.normalize(m.text_proj(text), dim=-1).numpy()
        v = torch.nn.functional.normalize(m.image_proj(image[:, 1:]), dim=-1).numpy()  # class token dropped
    want = [_single_attention_step_by_hand(t[b], mask[b].numpy(), v[b], 4.0) for b in range(2)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # padding positions do not change the score
    text2 = text.clone()
    text2[0, 3:] = 50.0
    torch.testing.assert_close(m(text2, mask, image), m(text, mask, image))


def test_imram_steps_use_the_memory_update_and_sum():
    base = dict(width=8, dim=6, smooth=9.0, seed=2)
    g = torch.Generator().manual_seed(1)
    text, image = torch.randn(3, 4, 8, generator=g), torch.randn(3, 5, 8, generator=g)
    mask = torch.ones(3, 4, dtype=torch.bool)
    m3 = IMRAMMatcher(IMRAMConfig(steps=3, **base))
    steps = m3.step_scores(text, mask, image)
    assert set(steps) == {"text", "image"} and steps["text"].shape == (3, 3)
    torch.testing.assert_close(m3(text, mask, image), steps["text"].sum(1) + steps["image"].sum(1))
    # step 1 is the same whatever K; step 2 attends again with x* = g x + (1 - g) tanh(W [x; c])
    m1 = IMRAMMatcher(IMRAMConfig(steps=1, **base))
    torch.testing.assert_close(m1.step_scores(text, mask, image)["text"][:, 0], steps["text"][:, 0])
    with torch.no_grad():
        t = torch.nn.functional.normalize(m3.text_proj(text), dim=-1)
        v = torch.nn.functional.normalize(m3.image_proj(image[:, 1:]), dim=-1)
        vm = torch.ones(3, 4, dtype=torch.bool)
        c = attend(t, mask, v, vm, 9.0)
        xc = torch.cat([t, c], -1)
        gate = torch.sigmoid(m3.mdu_text.gate(xc))
        t2 = gate * t + (1 - gate) * torch.tanh(m3.mdu_text.update(xc))
        c2 = attend(t2, mask, v, vm, 9.0)
        want = torch.nn.functional.cosine_similarity(t2, c2, dim=-1).mean(1)
    torch.testing.assert_close(steps["text"][:, 1].detach(), want)
    with pytest.raises(ConfigError):
        IMRAMConfig(width=8, directions="sideways")


def test_imram_gradient_is_finite_when_a_region_matches_no_real_word():
    m = IMRAMMatcher(IMRAMConfig(width=2, dim=2, steps=2))
    with torch.no_grad():  # identity projections: the tokens are the joint-space fragments
        m.text_proj.weight.copy_(torch.eye(2)), m.text_proj.bias.zero_()
        m.image_proj.weight.copy_(torch.eye(2)), m.image_proj.bias.zero_()
    text = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0]]])  # the last word is padding
    image = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]])  # class token, a match, a region no word matches
    s = m(text, torch.tensor([[True, True, False]]), image)
    s.backward()
    assert torch.isfinite(s).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())


# ----------------------------------------------------------------------------------------------------- WCGL


def test_wcgl_graph_embedding_and_discriminant_loss():
    cfg = WCGLConfig(width=4, dim=4, gcn_layers=1, keys=3, key_nodes=2, epsilon=0.01, sinkhorn_iters=100)
    m = WCGLMatcher(cfg)
    h = torch.tensor([[[1.0, 0, 0, 0], [0, 1.0, 0, 0]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    keys = torch.tensor([[[0, 1.0, 0, 0], [1.0, 0, 0, 0]],  # the graph's own nodes: W = 0
                         [[0, 0, 1.0, 0], [0, 0, 0, 1.0]],  # orthogonal: W = 1
                         [[-1.0, -1.0, 0, 0], [-1.0, -1.0, 0, 0]]])  # cos -1/sqrt(2) to each: W = 1.7071
    np.testing.assert_allclose(m.embed(h, mask, keys).detach().numpy(), [[0.0, -1.0, -1.70711]], atol=1e-3)
    with torch.no_grad():  # counterpart keys equal, the others far apart: the discriminant loss is 0
        m.image_keys.copy_(keys)
        m.text_keys.copy_(keys)
        assert float(m.extra_loss()) == pytest.approx(0.0, abs=1e-4)
        m.text_keys.copy_(keys[[1, 2, 0]])  # counterparts now far apart: a positive loss
        assert float(m.extra_loss()) > 0.5
    text, image = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    s = m(text, torch.ones(2, 5, dtype=torch.bool), image)
    assert s.shape == (2,) and torch.isfinite(s).all() and (s.abs() <= 1 + 1e-5).all()  # a correlation
    s.sum().backward()
    assert m.text_keys.grad is not None and torch.isfinite(m.text_keys.grad).all()


def test_group_losses_hand_case():
    s = torch.tensor([[2.0, 1.9, 0.0], [1.0, 0.0, -1.0]])
    # hinge, margin 0.2: row 0 hardest violation 0.2 - 2 + 1.9 = 0.1; row 1: 0 -> mean 0.05
    assert float(group_loss(s, "hinge", 0.2)) == pytest.approx(0.05)
    with pytest.raises(ConfigError):
        MatcherTrainConfig(loss="focal")


# ------------------------------------------------------------------------------------------ training, loading


@pytest.fixture(scope="module")
def coco_tiny():
    from xmr.data import load_dataset

    return load_dataset(f"coco:{FIXTURES / 'coco_tiny'}")


def _fit(matcher, enc, ds, epochs=12, **kw):
    cfg = MatcherTrainConfig(negatives=2, hard_k=3, epochs=epochs, batch_size=15, lr=3e-3, seed=0)
    return train_matcher(matcher, enc, ds.texts, ds.media, ds.text_to_item, cfg, **kw)


@pytest.mark.parametrize("make", [lambda w: IMRAMMatcher(IMRAMConfig(width=w, dim=32, steps=2)),
                                  lambda w: WCGLMatcher(WCGLConfig(width=w, dim=32, keys=8, sinkhorn_iters=20))],
                         ids=["imram", "wcgl"])
def test_matchers_learn_save_and_load(make, tiny_encoder, coco_tiny, tmp_path):
    ds = coco_tiny
    rr = _fit(make(tiny_encoder.token_width), tiny_encoder, ds, out=tmp_path / "m")
    name = rr.matcher.NAME
    hist = rr.info and json.loads((tmp_path / "m" / "config.json").read_text())["training"]
    assert hist["loss"] == "hinge" and hist["epochs"] == 12
    lines = (tmp_path / "m" / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,pair_acc,seconds" and len(lines) == 13
    first, last = (float(x.split(",")[1]) for x in (lines[1], lines[-1]))
    assert last < first  # the ranking loss went down
    pairs = np.array([(t, i) for t in range(ds.num_texts) for i in range(len(ds))])
    scores = rr.score(ds.texts, ds.media, pairs).reshape(ds.num_texts, len(ds))
    assert (scores.argmax(1) == ds.text_to_item).mean() >= 0.5  # fits its training pairs (chance: 0.25)
    again = create_reranker(f"{name}:{tmp_path / 'm'}")
    assert isinstance(again, TokenReranker) and again.describe()["matcher"] == name
    np.testing.assert_allclose(again.score(ds.texts, ds.media, pairs).reshape(scores.shape), scores, atol=1e-5)


def test_resume_gives_the_uninterrupted_weights(tiny_encoder, coco_tiny, tmp_path):
    w = tiny_encoder.token_width
    make = lambda: IMRAMMatcher(IMRAMConfig(width=w, dim=16, steps=2))  # noqa: E731
    straight = _fit(make(), tiny_encoder, coco_tiny, epochs=4).matcher
    _fit(make(), tiny_encoder, coco_tiny, epochs=2, out=tmp_path / "r")
    with pytest.raises(ConfigError, match="resume=True"):
        _fit(make(), tiny_encoder, coco_tiny, epochs=4, out=tmp_path / "r")
    with pytest.raises(ConfigError, match="cannot resume"):  # another matcher config
        train_matcher(IMRAMMatcher(IMRAMConfig(width=w, dim=16, steps=3)), tiny_encoder, coco_tiny.texts,
                      coco_tiny.media, coco_tiny.text_to_item,
                      MatcherTrainConfig(negatives=2, hard_k=3, epochs=4, batch_size=15), out=tmp_path / "r",
                      resume=True)
    resumed = _fit(make(), tiny_encoder, coco_tiny, epochs=4, out=tmp_path / "r", resume=True)
    assert resumed.info["resumed_from_epoch"] == 2
    for (k, a), (_, b) in zip(straight.state_dict().items(), resumed.matcher.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert len((tmp_path / "r" / "metrics.csv").read_text().splitlines()) == 5


# ------------------------------------------------------------------------------------------------ bad input


class _NoTokens:
    spec = "concept"
    capabilities = Capabilities()


def test_encoder_without_tokens_and_width_mismatch(tiny_encoder, tmp_path):
    with pytest.raises(ConfigError, match="no token-level outputs.*tiny"):
        check_token_encoder(_NoTokens())
    with pytest.raises(ConfigError, match="no token-level outputs"):
        TokenReranker(IMRAMMatcher(IMRAMConfig(width=64)), _NoTokens())
    # a matcher trained on 32-wide tokens, loaded with the 64-wide tiny encoder its config names
    IMRAMMatcher(IMRAMConfig(width=32, encoder="tiny")).save(tmp_path / "w32")
    with pytest.raises(ConfigError, match="32-wide tokens but the encoder 'tiny' gives 64-wide.*retrain"):
        create_reranker(f"imram:{tmp_path / 'w32'}")
    assert main(["-q", "search", "a cat", "--rerank", f"wcgl:{tmp_path / 'w32'}"]) == 2  # not a wcgl folder
    # a hostile config.json: refused by the stated limits before any tensor is allocated
    WCGLMatcher(WCGLConfig(width=8, dim=8, keys=2, key_nodes=1)).save(tmp_path / "huge")
    cfg = json.loads((tmp_path / "huge" / "config.json").read_text())
    (tmp_path / "huge" / "config.json").write_text(json.dumps({**cfg, "keys": 10 ** 9}))
    with pytest.raises(ConfigError, match="keys"):
        create_reranker(f"wcgl:{tmp_path / 'huge'}")


def test_search_and_eval_with_imram(tiny_encoder, coco_tiny, tmp_path, capsys):
    d = tmp_path / "imram"
    _fit(IMRAMMatcher(IMRAMConfig(width=tiny_encoder.token_width, dim=16, steps=2)), tiny_encoder, coco_tiny,
         epochs=2, out=d)
    code = main(["-q", "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--model", "tiny", "--rerank",
                 f"imram:{d}", "--rerank-k", "2", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["rerank"]["pairs_scored"] == 40
    assert res["rerank"]["cross_encoder"]["spec"].startswith("imram:")
    index = tmp_path / "index"
    assert main(["-q", "index", str(FIXTURES / "coco_tiny"), "--index", str(index), "--model", "tiny"]) == 0
    capsys.readouterr()
    code = main(["-q", "search", "a giraffe", "--index", str(index), "--k", "3", "--rerank", f"imram:{d}",
                 "--rerank-k", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["results"]) == 3 and out["rerank"]["k"] == 3


def test_train_reranker_command_trains_resumes_and_serves(tmp_path, capsys):
    out = tmp_path / "wcgl"
    base = ["-q", "train-reranker", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--split", "all", "--matcher",
            "wcgl", "--out", str(out), "--batch-size", "16", "--negatives", "1", "--hard-k", "2",
            "--config", '{"keys": 4, "dim": 16, "sinkhorn_iters": 5}']
    assert main(base + ["--epochs", "1"]) == 0
    assert "use --rerank wcgl:" in capsys.readouterr().out
    assert main(base + ["--epochs", "2"]) == 2  # checkpoints there: needs --resume
    assert "resume=True" in capsys.readouterr().err
    assert main(base + ["--epochs", "2", "--resume"]) == 0
    capsys.readouterr()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "xmr-wcgl-matcher" and cfg["keys"] == 4 and cfg["training"]["resumed_from_epoch"] == 1
    assert cfg["width"] == 64 and cfg["encoder"] == "tiny"
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    assert main(["-q", "train-reranker", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--matcher", "banana",
                 "--out", str(tmp_path / "b")]) == 2
    assert "Available: imram, wcgl, xattn" in capsys.readouterr().err
    code = main(["-q", "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--model", "tiny", "--rerank",
                 f"wcgl:{out}", "--rerank-k", "3", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["rerank"]["pairs_scored"] == 60
