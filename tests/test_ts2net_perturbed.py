"""TS2-Net's perturbed (differentiable) top-k token selection (``selection="perturbed"``): forward = expected
top-k indicators, gradient = the perturbed-maximum estimator, checked against the closed form for two scores; the
head trains through it and selects hard top-k in evaluation."""
from __future__ import annotations

import math

import pytest
import torch

from xmr.errors import ConfigError
from xmr.heads import create_head
from xmr.heads.ts2net import perturbed_topk


def test_small_sigma_gives_the_hard_top_k_in_patch_order():
    torch.manual_seed(0)
    s = torch.tensor([[0.1, 3.0, -1.0, 2.0, 0.5]])
    ind = perturbed_topk(s, 2, samples=50, sigma=1e-4)
    assert torch.equal(ind, torch.tensor([[[0.0, 1, 0, 0, 0], [0, 0, 0, 1, 0]]]))  # indices 1, 3 in that order


def test_expectation_and_gradient_match_the_closed_form_for_two_scores():
    # k = 1 of (a, b): P(pick a) = Phi((a - b) / (sigma sqrt 2)), d/da = phi(.) / (sigma sqrt 2)
    torch.manual_seed(0)
    a, b, sigma = 0.03, 0.0, 0.05
    x = torch.tensor([a, b], dtype=torch.float64, requires_grad=True)
    p = perturbed_topk(x, 1, samples=400_000, sigma=sigma)[0, 0]  # expected indicator of picking a
    u = (a - b) / (sigma * math.sqrt(2))
    assert float(p.detach()) == pytest.approx(0.5 * (1 + math.erf(u / math.sqrt(2))), abs=3e-3)
    p.backward()
    want = math.exp(-u * u / 2) / math.sqrt(2 * math.pi) / (sigma * math.sqrt(2))
    assert float(x.grad[0]) == pytest.approx(want, rel=0.03)
    assert float(x.grad[1]) == pytest.approx(-want, rel=0.03)
    with pytest.raises(ConfigError, match="k must be"):
        perturbed_topk(x.detach(), 3)


def test_perturbed_head_trains_the_scorer_and_is_deterministic_in_eval():
    torch.manual_seed(0)
    head = create_head("ts2net", {"dim": 8, "width": 16, "heads": 2, "select_k": 2, "selection": "perturbed",
                                  "perturb_samples": 64})
    frames = torch.randn(3, 4, 1 + 6, 16)
    head.train()
    head.embed_video(frames).sum().backward()
    assert head.scorer[-1].weight.grad is not None and head.scorer[-1].weight.grad.abs().sum() > 0
    head.eval()
    with torch.no_grad():
        assert torch.equal(head.embed_video(frames), head.embed_video(frames))
    with pytest.raises(ConfigError, match="selection"):
        create_head("ts2net", {"dim": 8, "width": 16, "heads": 2, "selection": "gumbel"})


def test_train_head_learns_with_perturbed_selection():
    from xmr.heads.train import train_head

    g = torch.Generator().manual_seed(0)
    frames = torch.randn(12, 3, 1 + 4, 16, generator=g)  # 12 videos, 3 frames, class token + 4 patches
    text = torch.nn.functional.normalize(torch.randn(12, 8, generator=g), dim=-1)
    pairs = [(i, i) for i in range(12)]
    cfg = {"dim": 8, "width": 16, "heads": 2, "select_k": 2, "selection": "perturbed", "perturb_samples": 32}
    head = train_head(frames, text, pairs, "ts2net", cfg, epochs=30, lr=3e-3, seed=0, batch_size=12)
    head.eval()
    with torch.no_grad():
        v = head.embed_video(frames)
    top1 = float(((text @ v.T).argmax(1) == torch.arange(12)).float().mean())
    assert top1 >= 0.75  # chance 1/12: the scorer and transformer learned through the perturbed top-k
