"""ASP (exact, DAA's evaluation) and the DAA loss: hand cases, soft ranks -> hard ranks, gradient check, PCME
integration, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xmr.errors import ConfigError
from xmr.eval import asp
from xmr.prob import PCME, PCMEConfig, daa_loss
from xmr.prob.daa import hard_ranks, soft_ranks
from xmr.synth.attributes import attribute_world, caption_fit


def test_asp_hand_case():
    sims = np.array([[0.9, 0.5, 0.1]])  # model ranks 1, 2, 3
    rel = np.array([[0.2, 0.9, 0.0]])  # relevance ranks 2, 1, 3 -> ratios 1/2, 1/2, 1
    out = asp(sims, rel, ks=(1, 2))
    assert out["ASP"] == pytest.approx(100 * 2 / 3)
    assert out["ASP@1"] == pytest.approx(100 * 0.2 / 0.9)
    assert out["ASP@2"] == pytest.approx(100.0)


def test_asp_skips_queries_without_relevance_in_asp_at_k_and_checks_input():
    sims = np.array([[0.9, 0.5], [0.1, 0.2]])
    rel = np.array([[1.0, 0.0], [0.0, 0.0]])
    assert asp(sims, rel, ks=(1,))["ASP@1"] == pytest.approx(100.0)
    with pytest.raises(ConfigError, match="same shape"):
        asp(sims, rel[:1])
    with pytest.raises(ConfigError, match=">= 0"):
        asp(sims, -rel)
    with pytest.raises(ConfigError, match="gallery size"):
        asp(sims, rel, ks=(3,))
    with pytest.raises(ConfigError, match="undefined"):
        asp(sims, np.zeros_like(rel), ks=(1,))


def test_soft_ranks_approach_hard_ranks():
    s = torch.tensor([[0.9, 0.1, 0.5, 0.3]], dtype=torch.float64)
    np.testing.assert_allclose(soft_ranks(s, 1e-4).numpy(), [[1, 4, 2, 3]], atol=1e-6)
    np.testing.assert_array_equal(hard_ranks(torch.tensor([[0.2, 0.9, 0.2]])).numpy(), [[2, 1, 3]])  # stable ties


def test_daa_loss_equals_one_minus_asp_at_small_temperature():
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(5, 7))
    rel = rng.random((5, 7))
    loss = float(daa_loss(torch.from_numpy(sims), torch.from_numpy(rel), temperature=1e-5))
    assert loss == pytest.approx(1 - asp(sims, rel, ks=(1,))["ASP"] / 100, abs=1e-6)


def test_daa_loss_gradcheck_and_direction():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    rel = torch.rand(3, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: daa_loss(x, rel, 0.5), (s,))
    # scores that agree with the relevance order give a lower loss than reversed scores
    assert float(daa_loss(rel, rel, 0.05)) < float(daa_loss(-rel, rel, 0.05))


def test_pcme_with_daa_term():
    w = attribute_world(40, seed=0, captions_per_item=1)
    x, t = torch.from_numpy(w.image_features[:16]), torch.from_numpy(w.text_features[:16])
    sem = torch.from_numpy(caption_fit(w, np.arange(16), np.arange(16)).T.astype(np.float32))
    assert np.allclose(np.diag(sem.numpy()), 1.0)  # every caption fits its own image
    m = PCME(PCMEConfig(image_dim=32, text_dim=32, embed_dim=8, num_samples=2, daa_beta=10.0))
    out = m.loss(x, t, torch.Generator().manual_seed(0), semantic=sem)
    assert 0 < float(out["daa"]) < 2 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert m.text_head.mu.weight.grad is not None
    with pytest.raises(ConfigError, match="semantic"):
        m.loss(x, t)
    with pytest.raises(ConfigError, match="daa_beta"):
        PCMEConfig(image_dim=2, text_dim=2, daa_beta=-1.0)
