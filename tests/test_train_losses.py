"""Every training loss: a small hand-computed case, a float64 gradient check of its formula, and (for every
registered loss) one forward/backward through a tiny adapter model with the state it keeps."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from xmr.registries import LOSSES, load_all
from xmr.train.losses import Batch, EpochContext, LossInfo, TeacherBatch, create_loss
from xmr.train.losses.coder import adaptive_weights
from xmr.train.losses.cots import queue_infonce, task_level_kl
from xmr.train.losses.infonce import clip_loss
from xmr.train.losses.mrl import complementary_loss, multimodal_contrastive
from xmr.train.losses.ncr import gmm_clean_probability, predicted_correspondence, soft_margin
from xmr.train.losses.neighbourhood import neighbour_mask, within_modality_hinge
from xmr.train.losses.vsepp import hinge_terms

load_all("loss")


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


# ------------------------------------------------------------------------------------------ hand-computed cases


def test_clip_loss_hand_case():
    e = torch.eye(2, dtype=torch.float64)
    # logits = identity: each row's CE is -log(e / (e + 1)) = log(1 + 1/e), both directions alike
    assert clip_loss(e, e, 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)))
    # scale 2: log(1 + e^-2)
    assert clip_loss(e, e, 2.0).item() == pytest.approx(math.log(1 + math.exp(-2)))


def test_vsepp_hinge_hand_case():
    sims = torch.tensor([[0.9, 0.5], [0.8, 0.3]], dtype=torch.float64)  # rows images, columns captions
    # image 0: caption 1 costs [0.2 + 0.5 - 0.9]_+ = 0; image 1: caption 0 costs 0.2 + 0.8 - 0.3 = 0.7
    # caption 0: image 1 costs 0.2 + 0.8 - 0.9 = 0.1; caption 1: image 0 costs 0.2 + 0.5 - 0.3 = 0.4
    assert hinge_terms(sims, 0.2, hardest=True).tolist() == pytest.approx([0.1, 1.1])
    assert hinge_terms(sims, 0.2, hardest=False).tolist() == pytest.approx([0.1, 1.1])  # one negative: sum == max
    sims3 = torch.tensor([[0.9, 0.8, 0.85], [0.1, 0.5, 0.0], [0.0, 0.0, 0.5]], dtype=torch.float64)
    # image 0 vs captions 1, 2: 0.1, 0.15 -> max 0.15 / sum 0.25; caption 0 vs images 1, 2: 0 -> 0
    assert hinge_terms(sims3, 0.2, hardest=True)[0].item() == pytest.approx(0.15)
    assert hinge_terms(sims3, 0.2, hardest=False)[0].item() == pytest.approx(0.25)
    # a per-pair margin: pair 0 with margin 0 pays nothing there
    assert hinge_terms(sims3, torch.tensor([0.0, 0.2, 0.2], dtype=torch.float64), True)[0].item() == 0.0


def test_ncr_soft_margin_and_prediction_hand_case():
    y = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)
    assert soft_margin(y, 0.2, 10.0).tolist() == pytest.approx([0.2, 0.0, 0.2 * (math.sqrt(10) - 1) / 9])
    e = torch.eye(2, dtype=torch.float64)
    # s = I / 0.5: softmax of (2, 0) -> e^2 / (e^2 + 1), the same in both directions
    p = predicted_correspondence(e, e, 0.5)
    assert p.tolist() == pytest.approx([math.exp(2) / (math.exp(2) + 1)] * 2)


def test_ncr_gmm_separates_low_and_high_losses():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.normal(0.1, 0.02, 80), rng.normal(0.9, 0.05, 20)])
    p = gmm_clean_probability(losses, seed=0)
    assert (p[:80] > 0.5).all() and (p[80:] < 0.5).all()


def test_mrl_hand_cases():
    z = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    c = torch.eye(2, dtype=torch.float64)
    # logits (1, 0), label 0: log(1 - p_0) = log(1 / (e + 1))
    assert complementary_loss(z, c, torch.tensor([0]), 1.0).item() == pytest.approx(-math.log(1 + math.e))
    assert complementary_loss(z, c, torch.tensor([1]), 1.0).item() == pytest.approx(-math.log(1 + math.exp(-1)))
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    txt = img.clone()
    # all = [i0, i1, t0, t1]; row i0 (self dropped): i1 -> 0, t0 -> 1, t1 -> 0; positive t0
    one = -math.log(math.e / (math.e + 2))
    assert multimodal_contrastive(img, txt, 1.0).item() == pytest.approx(2 * one)


def test_queue_infonce_and_coder_weights_hand_case():
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    queue = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert queue_infonce(q, q, queue, 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)))
    w = torch.tensor([[2.0]], dtype=torch.float64)
    assert queue_infonce(q, q, queue, 1.0, neg_weight=w).item() == pytest.approx(math.log(1 + 2 * math.exp(-1)))
    assert queue_infonce(q, q, queue, 1.0, neg_mask=torch.tensor([[True]])).item() == pytest.approx(0.0)
    queue2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    aw = adaptive_weights(q, queue2, beta=1.0)  # 2 * softmax(0, 1)
    assert aw.tolist()[0] == pytest.approx([2 / (1 + math.e), 2 * math.e / (1 + math.e)])
    assert adaptive_weights(q, queue2, beta=0.0).tolist()[0] == [1.0, 1.0]  # beta 0: plain momentum contrast


def test_task_level_kl_is_zero_for_symmetric_scores_and_positive_otherwise():
    e = torch.eye(3, dtype=torch.float64)
    assert task_level_kl(e, e, 0.5).item() == pytest.approx(0.0, abs=1e-12)
    assert task_level_kl(_unit(3, 4, seed=1), _unit(3, 4, seed=2), 0.5).item() > 0


def test_neighbourhood_hand_case():
    ref = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=torch.float64)
    nbr = neighbour_mask(ref, 1)
    assert nbr.tolist() == [[False, True, False], [True, False, False], [False, True, False]]
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    # anchor 0: neighbour 1 (s = 0), hardest non-neighbour 2 (s = 1): 0.2 - 0 + 1 = 1.2
    # anchor 1: neighbour 0 (s = 0), non-neighbour 2 (s = 0): 0.2;  anchor 2: neighbour 1 (s = 0), other 0 (s = 1): 1.2
    assert within_modality_hinge(emb, nbr, 0.2).item() == pytest.approx((1.2 + 0.2 + 1.2) / 3)


# --------------------------------------------------------------------------------------------- gradient checks

GRAD_CASES = {
    "clip_loss": lambda a, b: clip_loss(F.normalize(a, dim=1), F.normalize(b, dim=1), 3.0),
    "vsepp_hardest": lambda a, b: hinge_terms(F.normalize(a, dim=1) @ F.normalize(b, dim=1).T, 0.5, True).sum(),
    "vsepp_sum": lambda a, b: hinge_terms(F.normalize(a, dim=1) @ F.normalize(b, dim=1).T, 0.5, False).sum(),
    "ncr_soft_margin_hinge": lambda a, b: hinge_terms(
        F.normalize(a, dim=1) @ F.normalize(b, dim=1).T,
        soft_margin(torch.tensor([0.3, 0.9, 0.6, 1.0], dtype=torch.float64), 0.5, 10.0), True).sum(),
    "mrl_complementary": lambda a, b: complementary_loss(F.normalize(a, dim=1), F.normalize(b[:3].T, dim=0),
                                                         torch.tensor([0, 1, 2, 1]), 0.5),
    "mrl_contrastive": lambda a, b: multimodal_contrastive(F.normalize(a, dim=1), F.normalize(b, dim=1), 0.5),
    "cots_queue_infonce": lambda a, b: queue_infonce(F.normalize(a, dim=1), F.normalize(b, dim=1),
                                                     _unit(5, 3, seed=9), 0.5),
    "coder_weighted": lambda a, b: queue_infonce(F.normalize(a, dim=1), F.normalize(b, dim=1), _unit(5, 3, seed=9),
                                                 0.5, neg_weight=adaptive_weights(_unit(4, 3, seed=5),
                                                                                  _unit(5, 3, seed=9), 5.0)),
    "cots_task_kl": lambda a, b: task_level_kl(F.normalize(a, dim=1), F.normalize(b, dim=1), 0.5),
    "neighbourhood": lambda a, b: within_modality_hinge(
        F.normalize(a, dim=1), neighbour_mask(b.detach(), 1), 0.5),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_gradcheck(name):
    a = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)
    assert gradcheck(GRAD_CASES[name], (a, b), eps=1e-6, atol=1e-5)


# ------------------------------------------------------------------------------ every registered loss, end to end


def _adapter_model(dim=8, seed=0):
    from xmr.encoders.trained import AdapterConfig
    from xmr.train.model import AdapterModel

    return AdapterModel(AdapterConfig(dim, 0, 16, True, seed), AdapterConfig(dim, 0, 16, True, seed + 1), "tiny")


def _teachers(b=6):
    """A cross-modal teacher (width 5) and a text-only one (width 3): what the loop gives losses that need them."""
    return (TeacherBatch("t1", _unit(b, 5, seed=7).float(), _unit(b, 5, seed=8).float()),
            TeacherBatch("text:t2", _unit(b, 3, seed=9).float(), None))


def _batch(model, b=6, dim=8, epoch=0):
    img_in, txt_in = _unit(b, dim, seed=3).float(), _unit(b, dim, seed=4).float()
    return Batch(img=model.encode_image(img_in), txt=model.encode_text(txt_in), index=torch.arange(b),
                 img_in=img_in, txt_in=txt_in, item=torch.arange(b), labels=torch.tensor([0, 1, 2, 0, 1, 2])[:b],
                 txt_ref=txt_in, epoch=epoch, teachers=_teachers(b))


SMALL = {"cots": {"queue_size": 8}, "coder": {"queue_size": 8}, "ncr": {"warmup_epochs": 1, "chunk": 4}}


def _video_model_and_batch(epoch=0):
    """MILES trains a video model from its space-time tokens: a tiny video model (width 8) and 6 clips of 2 frames."""
    from xmr.encoders.tiny_video import TinyVideoConfig
    from xmr.train.video_data import TinyVideoModel

    model = TinyVideoModel(TinyVideoConfig({"image_size": 16, "patch_size": 8, "width": 8, "layers": 1, "heads": 2,
                                            "dim": 8, "context_length": 16}, 2))
    g = torch.Generator().manual_seed(3)
    img_in, txt_in = torch.randn(6, 2, 3, 16, 16, generator=g), torch.randint(0, 256, (6, 16), generator=g)

    def batch(m, epoch=0):
        return Batch(img=m.encode_image(img_in), txt=m.encode_text(txt_in), index=torch.arange(6), img_in=img_in,
                     txt_in=txt_in, item=torch.arange(6), epoch=epoch)

    return model, batch, lambda net: (net.encode_image(img_in), net.encode_text(txt_in))


VIDEO_LOSSES = ("miles",)


@pytest.mark.parametrize("name", LOSSES.names())
def test_registered_loss_trains_the_model(name):
    torch.manual_seed(0)
    if name in VIDEO_LOSSES:
        model, make_batch, embed_all = _video_model_and_batch()
    else:
        model, make_batch = _adapter_model(), _batch
        embed_all = lambda net: (net.encode_image(_unit(6, 8, seed=3).float()),  # noqa: E731
                                 net.encode_text(_unit(6, 8, seed=4).float()))
    info = LossInfo(num_pairs=6, dim=8, num_classes=3, seed=0)
    loss = create_loss(name, SMALL.get(name), model, info)
    state0 = {k: v.clone() for k, v in loss.state_dict().items()}
    for epoch in (0, 1):  # epoch 1 runs NCR's co-divide; momentum losses fill their queues
        ctx = EpochContext(epoch=epoch, epochs=2, seed=0, model=model, num_pairs=6, pair_item=torch.arange(6),
                           embed_all=embed_all)
        loss.on_epoch_start(ctx)
        model.zero_grad()
        value, logs = loss(make_batch(model, epoch=epoch), model)
        assert value.dim() == 0 and torch.isfinite(value), name
        value.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"{name}: no gradient reaches the model"
        assert all(isinstance(v, float) for v in logs.values())
        loss.after_step(model)
    if name in ("cots", "coder"):  # the queue holds the keys of the last steps
        assert not torch.equal(state0["img_queue"], loss.state_dict()["img_queue"])
        assert (loss.state_dict()["queue_item"] >= 0).sum() == 8  # two steps of 6 keys filled the 8 slots
    if name == "ncr":
        assert bool(loss.divided) and not torch.equal(loss.prob_a, torch.ones(6))
    if name == "miles":  # the snapshot encoder is not trained by gradients (it follows the model by EMA)
        assert all(p.grad is None for p in loss.snapshot.parameters())


def test_unknown_loss_and_bad_config_are_clear():
    from xmr.errors import ConfigError

    info = LossInfo(num_pairs=4, dim=8)
    with pytest.raises(ConfigError, match="unknown training loss 'nope'. Available: coder"):
        create_loss("nope", None, _adapter_model(), info)
    with pytest.raises(ConfigError, match="unknown field"):
        create_loss("vsepp", {"margn": 0.1}, _adapter_model(), info)
    with pytest.raises(ConfigError, match="not valid JSON"):
        create_loss("vsepp", "{margin", _adapter_model(), info)
    with pytest.raises(ConfigError, match="mrl needs class labels"):
        create_loss("mrl", None, _adapter_model(), info)


@pytest.mark.parametrize("name", ["vsepp", "neighbourhood"])
def test_hinge_warmup_uses_the_sum_then_the_hardest_negative(name):
    model = _adapter_model()
    info = LossInfo(num_pairs=6, dim=8)
    loss = create_loss(name, {"warmup_epochs": 1, **({"lambda_text": 0.0, "lambda_img": 0.0}
                                                     if name == "neighbourhood" else {})}, model, info)
    with torch.no_grad():
        b0, b1 = _batch(model, epoch=0), _batch(model, epoch=1)
        sims = b0.img @ b0.txt.T
        assert loss(b0, model)[0].item() == pytest.approx(hinge_terms(sims, 0.2, False).mean().item())
        assert loss(b1, model)[0].item() == pytest.approx(hinge_terms(sims, 0.2, True).mean().item())


# ------------------------------------------------------------------- issue 12: daa and dhd, heads saved with the model


def test_daa_term_is_beta_times_both_directions_of_daa_loss():
    from xmr.prob.daa import daa_loss

    torch.manual_seed(0)
    model = _adapter_model()
    info = LossInfo(num_pairs=6, dim=8, num_classes=3)
    b = _batch(model)
    with torch.no_grad():
        log_p = torch.log(torch.rand(6, 6, dtype=torch.float32).clamp_min(1e-3))
        for relevance, rel in (("captions", F.normalize(b.txt_ref, dim=-1) @ F.normalize(b.txt_ref, dim=-1).T),
                               ("labels", (b.labels[:, None] == b.labels[None, :]).float())):
            loss = create_loss("daa", {"beta": 3.0, "temperature": 0.05, "relevance": relevance}, model, info)
            term, logs = loss.extra_term(b, log_p)
            p = log_p.exp()
            want = 3.0 * (daa_loss(p, rel, 0.05) + daa_loss(p.T, rel.T, 0.05))
            assert term.item() == pytest.approx(want.item(), rel=1e-6)
            assert logs["daa"] == pytest.approx(want.item() / 3.0, rel=1e-6)
        # beta 0: exactly the pcme loss (same RNG state -> same samples)
        torch.manual_seed(5)
        v0 = create_loss("daa", {"beta": 0.0}, model, info)(b, model)[0]
        torch.manual_seed(5)
        v1 = create_loss("pcme", None, model, info)(b, model)[0]
        assert v0.item() == pytest.approx(v1.item(), rel=1e-6)
    from xmr.errors import ConfigError

    with pytest.raises(ConfigError, match="relevance 'labels' needs class labels"):
        create_loss("daa", {"relevance": "labels"}, model, LossInfo(num_pairs=6, dim=8))
    with pytest.raises(ConfigError, match="relevance 'captions' or 'labels'"):
        create_loss("daa", {"relevance": "cider"}, model, info)


def test_dhd_loss_is_the_papers_sum_of_terms():
    from xmr.hashing.dhd import distill_loss, feature_views, proxy_loss, quantization_loss

    model = _adapter_model()
    info = LossInfo(num_pairs=6, dim=8, num_classes=3, seed=0)
    loss = create_loss("dhd", {"bits": 16}, model, info)
    b = _batch(model)
    torch.manual_seed(7)
    value, logs = loss(b, model)
    torch.manual_seed(7)  # the same views, recomputed by hand
    weak, strong = feature_views(b.img_in, None, weak_noise=0.05, strong_noise=0.3, strong_dropout=0.2)
    h_t, h_s = loss.image_head(model.encode_image(weak)), loss.image_head(model.encode_image(strong))
    y = F.one_hot(b.labels, 3).float()
    h_x = loss.text_head(b.txt)
    want = (proxy_loss(h_t, loss.proxies, y, 0.2) + 0.1 * distill_loss(h_s, h_t) + 0.1 * quantization_loss(h_t, 0.5)
            + proxy_loss(h_x, loss.proxies, y, 0.2) + 0.1 * quantization_loss(h_x, 0.5))
    assert value.item() == pytest.approx(want.item(), rel=1e-5)
    assert 0 <= logs["bit_balance"] <= 1
    heads = loss.export_heads()
    assert heads["hash"][0] == {"dim": 8, "bits": 16, "text": True}
    assert set(heads["hash"][1].state_dict()) == {"image.proj.weight", "image.norm.weight", "image.norm.bias",
                                                  "text.proj.weight", "text.norm.weight", "text.norm.bias"}
    from xmr.errors import ConfigError

    with pytest.raises(ConfigError, match="dhd needs class labels"):
        create_loss("dhd", None, model, LossInfo(num_pairs=6, dim=8))
    with pytest.raises(ConfigError, match="bits must be one of"):
        create_loss("dhd", {"bits": 12}, model, info)


def test_heads_round_trip_through_a_trained_folder(tmp_path):
    from xmr.encoders.trained import load_trained_module

    model = _adapter_model()
    info = LossInfo(num_pairs=6, dim=8, num_classes=3)
    for name, kind in (("pcme", "uncertainty"), ("dhd", "hash")):
        loss = create_loss(name, None, model, info)
        heads = loss.export_heads()
        model.save(tmp_path / name, {"note": "test"}, heads)
        _, cfg, module = load_trained_module(tmp_path / name)
        assert cfg["heads"] == {kind: heads[kind][0]}
        for k, v in heads[kind][1].state_dict().items():
            assert torch.equal(module.heads[kind].state_dict()[k], v)
    assert "heads" not in load_trained_module(model.save(tmp_path / "plain", {}))[1]
