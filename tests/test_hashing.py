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
