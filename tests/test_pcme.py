"""PCME heads and soft contrastive loss: a hand-computed case, consistency with xmr.eval.match_probability, a
gradient check, the KL terms, bad config, and the claim's direction on a tiny attribute world."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xmr.errors import ConfigError
from xmr.eval import match_probability
from xmr.prob import PCME, PCMEConfig, kl_prior, soft_contrastive_loss
from xmr.prob.pcme import log_match_probability, pair_logits
from xmr.synth.attributes import attribute_world


def _sig(x):
    return 1 / (1 + math.exp(-x))


def test_soft_contrastive_loss_hand_case():
    # K = 1, D = 1: images at 0 and 2, captions at 0 and 1; a = b = 1
    img = torch.tensor([[[0.0]], [[2.0]]], dtype=torch.float64)
    txt = torch.tensor([[[0.0]], [[1.0]]], dtype=torch.float64)
    a = torch.tensor(1.0, dtype=torch.float64)
    b = torch.tensor(1.0, dtype=torch.float64)
    # (0,0) match d=0: -log s(1); (0,1) non-match d=1: -log(1-s(0)); (1,0) non-match d=2: -log(1-s(-1));
    # (1,1) match d=1: -log s(0). Counted for both directions (x2).
    want = 2 * (-math.log(_sig(1)) - math.log(0.5) - math.log(1 - _sig(-1)) - math.log(0.5))
    assert float(soft_contrastive_loss(img, txt, a, b)) == pytest.approx(want, abs=1e-6)


def test_training_probability_equals_eval_function():
    g = torch.Generator().manual_seed(0)
    za = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    zb = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    log_p, log_not_p = log_match_probability(pair_logits(za, zb, torch.tensor(1.3), torch.tensor(0.4)))
    ref = match_probability(za.numpy(), zb.numpy(), 1.3, 0.4)
    np.testing.assert_allclose(log_p.exp().numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(log_not_p.exp().numpy(), 1 - ref, atol=1e-6)


def test_soft_contrastive_loss_gradcheck():
    g = torch.Generator().manual_seed(1)
    img = torch.randn(3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(soft_contrastive_loss, (img, txt, a, b))


def test_kl_terms():
    zero = torch.zeros(1, 3)
    assert float(kl_prior(zero, zero, "reference")) == 0.0 and float(kl_prior(zero, zero, "exact")) == 0.0
    mu = torch.ones(1, 2)
    assert float(kl_prior(mu, torch.zeros(1, 2), "exact")) == pytest.approx(1.0)  # 0.5 * mu^2 per dim
    ls = torch.full((1, 1), math.log(2.0))  # sigma = 2: exact KL = 0.5 * (4 - 1 - 2 log 2)
    assert float(kl_prior(torch.zeros(1, 1), ls, "exact")) == pytest.approx(0.5 * (4 - 1 - 2 * math.log(2)))


def test_config_errors():
    with pytest.raises(ConfigError, match="embed_dim"):
        PCMEConfig(image_dim=4, text_dim=4, embed_dim=0)
    with pytest.raises(ConfigError, match="kl"):
        PCMEConfig(image_dim=4, text_dim=4, kl="nope")
    m = PCME(PCMEConfig(image_dim=4, text_dim=4, embed_dim=3))
    with pytest.raises(ConfigError, match="modality"):
        m.embed(torch.zeros(1, 4), "audio")
    with pytest.raises(ConfigError, match="2 images but 3 captions"):
        soft_contrastive_loss(torch.zeros(2, 1, 3), torch.zeros(3, 1, 3), torch.tensor(1.0), torch.tensor(0.0))


def test_uncertainty_grows_with_caption_ambiguity():
    """The paper's qualitative claim on a tiny world: captions that leave more attributes out get a larger σ."""
    from scipy.stats import spearmanr

    torch.manual_seed(0)
    w = attribute_world(200, seed=0, captions_per_item=2)
    m = PCME(PCMEConfig(image_dim=32, text_dim=32, embed_dim=16, num_samples=4))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    img, txt = torch.from_numpy(w.image_features), torch.from_numpy(w.text_features)
    t2i = torch.from_numpy(w.text_to_item)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randperm(txt.shape[0], generator=g)[:32]
        loss = m.loss(img[t2i[idx]], txt[idx], g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    u = m.uncertainty(m.embed(txt, "text")[1]).numpy()
    assert spearmanr(u, w.ambiguity).statistic > 0.2


# ---- the trainer's `pcme` loss (xmr train --loss pcme) -----------------------------------------------------------
def _adapter(dim=8):
    from xmr.encoders.trained import AdapterConfig
    from xmr.train.model import AdapterModel

    return AdapterModel(AdapterConfig(dim, 0, 16, True, 0), AdapterConfig(dim, 0, 16, True, 1), "tiny")


def test_trainer_pcme_loss_is_the_soft_contrastive_loss_and_refuses_full_mode():
    from xmr.train.losses import Batch, LossInfo, create_loss

    model = _adapter()
    loss = create_loss("pcme", {"num_samples": 1, "init_log_sigma": -30.0, "vib_beta": 0.0}, model,
                       LossInfo(num_pairs=4, dim=8))
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    item = torch.tensor([0, 1, 1, 2])  # captions 1 and 2 describe the same image: a match, not a negative
    b = Batch(img=model.encode_image(x), txt=model.encode_text(t), index=torch.arange(4), img_in=x, txt_in=t, item=item)
    value, logs = loss(b, model)
    # sigma ~ 0 and one sample: the samples are the means; same-image pairs are matches
    logits = pair_logits(b.img.unsqueeze(1), b.txt.unsqueeze(1), torch.tensor(15.0), torch.tensor(15.0))
    log_p, log_not_p = log_match_probability(logits)
    want = 2 * torch.where(item[:, None] == item[None, :], -log_p, -log_not_p).sum()
    assert float(value.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    assert set(logs) >= {"match", "kl", "a", "b", "txt_log_sigma"}
    value.backward()
    assert loss.txt_sigma.weight.grad is not None and model.net.text.up.weight.grad is not None

    from xmr.encoders.tiny import TinyConfig
    from xmr.train.model import TinyModel

    with pytest.raises(ConfigError, match="--mode adapter"):
        create_loss("pcme", None, TinyModel(TinyConfig()), LossInfo(num_pairs=4, dim=8))
