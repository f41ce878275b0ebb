"""DHD losses (hand cases, gradient check), codes, LSH floor, packing for FAISS binary indexes, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xmr.errors import ConfigError
from xmr.eval import hamming_similarity, label_map
from xmr.hashing import DHD, DHDConfig, feature_views, lsh_codes, pack_bits
from xmr.hashing.dhd import distill_loss, proxy_loss, quantization_loss


def test_proxy_loss_hand_case():
    h = torch.tensor([[1.0, 0.0]])
    proxies = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # cosines (1, 0) / tau 0.5 -> logits (2, 0); target class 0: -log softmax = log(1 + e^-2)
    assert float(proxy_loss(h, proxies, torch.tensor([[1.0, 0.0]]), 0.5)) == pytest.approx(math.log(1 + math.exp(-2)))
    # two labels: target (0.5, 0.5): 0.5 * (log(1+e^-2)) + 0.5 * (2 + log(1+e^-2))
    both = float(proxy_loss(h, proxies, torch.tensor([[1.0, 1.0]]), 0.5))
    assert both == pytest.approx(math.log(1 + math.exp(-2)) + 1.0)


def test_distill_and_quantization_hand_cases():
    a = torch.tensor([[1.0, 0.0]])
    assert float(distill_loss(a, a)) == pytest.approx(0.0, abs=1e-7)
    assert float(distill_loss(a, torch.tensor([[0.0, 1.0]]))) == pytest.approx(1.0)
    # h = 1 exactly: g+ = 1 (target 1), g- = exp(-0.5 * (2/std)^2) (target 0); std = 1 -> g- = e^-2
    q = float(quantization_loss(torch.tensor([[1.0]]), 1.0))
    assert q == pytest.approx(-math.log(1 - 1e-7) - math.log(1 - math.exp(-2)), rel=1e-4)
    # a code at 0 is the worst place to be: larger loss than at +-1
    assert float(quantization_loss(torch.tensor([[1e-3]]), 0.5)) > float(quantization_loss(torch.tensor([[0.99]]), 0.5))


def test_dhd_loss_gradcheck():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda h, p: proxy_loss(h, p, y, 0.2), (h, p))
    s = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: distill_loss(s, h.detach()), (s,))


def test_dhd_learns_codes_that_beat_lsh_on_labels():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16))
    cls = rng.integers(0, 4, size=400)
    x = (centers[cls] + 0.8 * rng.normal(size=(400, 16))).astype(np.float32)
    y = np.eye(4, dtype=np.float32)[cls]
    torch.manual_seed(0)
    m = DHD(DHDConfig(in_dim=16, num_classes=4, bits=16))
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    xt = torch.from_numpy(x)
    for _ in range(100):
        idx = torch.randperm(300, generator=g)[:64]
        weak, strong = feature_views(xt[idx], g)
        loss = m.loss(weak, strong, torch.from_numpy(y[idx.numpy()]))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    codes = m.codes(xt)
    assert codes.shape == (400, 16) and set(np.unique(codes)) <= {0, 1}
    learned = label_map(hamming_similarity(codes[300:], codes[:300]), y[300:], y[:300], 50)
    lsh = lsh_codes(x, 16, seed=0)
    floor = label_map(hamming_similarity(lsh[300:], lsh[:300]), y[300:], y[:300], 50)
    assert learned > floor + 0.1


def test_packed_codes_search_like_hamming_similarity():
    import faiss

    rng = np.random.default_rng(3)
    gallery = rng.integers(0, 2, size=(50, 32), dtype=np.uint8)
    query = rng.integers(0, 2, size=(3, 32), dtype=np.uint8)
    index = faiss.IndexBinaryFlat(32)
    index.add(pack_bits(gallery))
    dist, _ = index.search(pack_bits(query), 50)
    want = np.sort(-hamming_similarity(query, gallery), axis=1)
    np.testing.assert_array_equal(dist, want)


def test_lsh_is_deterministic_and_checks_input():
    x = np.random.default_rng(0).normal(size=(5, 8))
    np.testing.assert_array_equal(lsh_codes(x, 16, seed=1), lsh_codes(x, 16, seed=1))
    with pytest.raises(ConfigError, match="bits"):
        lsh_codes(x, 0)
    with pytest.raises(ConfigError, match=r"\(N, D\)"):
        lsh_codes(x[0], 8)


def test_bad_config_and_inputs():
    with pytest.raises(ConfigError, match="bits must be one of"):
        DHDConfig(in_dim=8, num_classes=2, bits=12)
    with pytest.raises(ConfigError, match="num_classes"):
        DHDConfig(in_dim=8, num_classes=0)
    m = DHD(DHDConfig(in_dim=8, num_classes=2, bits=16))
    with pytest.raises(ConfigError, match="no 'text' hash head"):
        m.codes(torch.zeros(1, 8), "text")
    with pytest.raises(ConfigError, match="at least one label"):
        m.loss(torch.zeros(2, 8), torch.zeros(2, 8), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ConfigError, match="labels must be"):
        m.loss(torch.zeros(2, 8), torch.zeros(2, 8), torch.ones(2, 3))
    with pytest.raises(ConfigError, match="multiple of 8"):
        pack_bits(np.zeros((2, 12), dtype=np.uint8))


# ---- DKPH (unsupervised video hashing) ------------------------------------------------------------------------
def test_dkph_codes_straight_through_and_shapes():
    from xmr.hashing import DKPH, DKPHConfig

    torch.manual_seed(0)
    m = DKPH(DKPHConfig(frame_dim=8, num_frames=6, bits=16, hidden=16))
    x = torch.randn(3, 6, 8, requires_grad=True)
    codes, recon, hidden = m(x)
    assert set(codes.detach().unique().tolist()) <= {-1.0, 1.0}
    assert recon.shape == (3, 6, 8) and hidden.shape == (3, 6, 16)
    codes.sum().backward()  # the sign passes gradients straight through
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert m.codes(torch.randn(2, 10, 8)).shape == (2, 16)  # longer videos are resampled to num_frames
    with pytest.raises(ConfigError, match=r"\(B, T, 8\)"):
        m(torch.randn(2, 6, 5))


def test_dkph_knowledge_and_training_beat_reconstruction_only():
    """The paper's claim in miniature: with the similarity knowledge the codes group classes; reconstruction alone
    does not."""
    from xmr.hashing import DKPH, DKPHConfig, build_knowledge, dkph_loss
    from xmr.synth.frame_features import frame_feature_world

    w = frame_feature_world(300, num_classes=10, num_frames=8, dim=16, seed=2)
    frames = torch.from_numpy(w.frames)
    know = build_knowledge(w.frames[:200], 16, neighbours=5, anchors=10, seed=2)
    assert all(i not in know.similar[i] for i in range(200))
    same = np.mean([np.mean(w.labels[know.similar[i]] == w.labels[i]) for i in range(200)])
    assert same > 0.3  # the self-supervised neighbours share the hidden class far above chance (0.1)
    y = np.eye(10)[w.labels]
    scores = {}
    for name, extra in (("dkph", {}), ("recon", {"w_tsim": 0.0, "w_bsim": 0.0})):
        torch.manual_seed(2)
        m = DKPH(DKPHConfig(frame_dim=16, num_frames=8, bits=16, hidden=16, **extra))
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(2)
        for _ in range(100):
            batch = torch.randperm(200, generator=g)[:32].numpy()
            loss = dkph_loss(m, frames[:200], batch, know, g)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        c = m.codes(frames[200:])
        scores[name] = label_map(hamming_similarity(c[:50], c[50:]), y[200:250], y[250:], 20)
    assert scores["dkph"] > scores["recon"] + 0.1
