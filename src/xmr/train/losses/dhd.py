"""``dhd``: Deep Hash Distillation (Jang et al., ECCV 2022) as a training loss, for ``xmr train --mode adapter`` on a
dataset with class labels; the saved model is searched by its binary codes with ``hash:OUT`` (``xmr index --model
hash:OUT`` stores the bits in the ``binary`` backend).

The loss owns DHD's hash heads ``h = tanh(LayerNorm(W y))`` over the adapters' L2-normalised outputs ``y`` (so the
adapters play the part of the fine-tuned backbone) and the class proxies, and applies the maths of
:mod:`xmr.hashing.dhd` (paper Eq. 3-7):

    L = L_HP(h_weak) + λ1 · L_HD(h_strong, h_weak) + λ2 · L_Q(h_weak)
        [+ λ_text · (L_HP(h_text) + λ2 · L_Q(h_text))   with the text head, on by default]

with one-hot class targets (the manifest's single ``label``; DHD's multi-label targets are the same formula with
several ones). Deviations: those of :mod:`xmr.hashing.dhd` — the weak / strong views are feature-level
(:func:`~xmr.hashing.dhd.feature_views` on the frozen base features, torch's global RNG, which the trainer
checkpoints) instead of pixel augmentations, and the text head sharing the proxies is xmr's addition for text
queries (``text: false`` gives the paper's image-only model).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...hashing.dhd import BITS, HashHead, distill_loss, feature_views, proxy_loss, quantization_loss
from ...registries import LOSSES
from .base import Batch, TrainLoss


@LOSSES.register("dhd", help="Deep Hash Distillation (Jang et al. 2022): hash codes from class labels; adapter mode, "
                             "search the result with hash:OUT")
class DHDLoss(TrainLoss):
    needs = frozenset({"labels"})

    @dataclass(frozen=True)
    class Config:
        bits: int = 64  # code length (16, 32, 64 or 128)
        temperature: float = 0.2  # τ of the proxy softmax
        lambda_distill: float = 0.1  # λ1
        lambda_quant: float = 0.1  # λ2
        quant_std: float = 0.5  # σ of the quantization kernels
        text: bool = True  # also train a text hash head on the same proxies (text -> image search)
        lambda_text: float = 1.0  # weight of the text head's terms
        weak_noise: float = 0.05  # feature-level views (see xmr.hashing.dhd.feature_views)
        strong_noise: float = 0.3
        strong_dropout: float = 0.2

    def __init__(self, config, model, info):
        super().__init__(config, model, info)
        c = config
        if getattr(model, "mode", None) != "adapter":
            raise ConfigError("dhd trains hash heads over adapters: use --mode adapter")
        if info.num_classes < 1:
            raise ConfigError("dhd needs class labels ('label' on every manifest line): its proxies are one per class")
        if c.bits not in BITS:
            raise ConfigError(f"dhd: bits must be one of {BITS}, got {c.bits}")
        if c.temperature <= 0 or c.quant_std <= 0 or min(c.lambda_distill, c.lambda_quant, c.lambda_text) < 0:
            raise ConfigError("dhd: temperature and quant_std > 0, lambdas >= 0")
        if not 0 <= c.strong_dropout < 1 or c.weak_noise < 0 or c.strong_noise < 0:
            raise ConfigError("dhd: noise >= 0 and strong_dropout in [0, 1)")
        g = torch.Generator().manual_seed(info.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(info.seed)
            self.image_head = HashHead(info.dim, c.bits)
            self.text_head = HashHead(info.dim, c.bits) if c.text else None
        proxies = torch.empty(info.num_classes, c.bits)
        nn.init.xavier_uniform_(proxies, gain=nn.init.calculate_gain("tanh"), generator=g)
        self.proxies = nn.Parameter(proxies)

    def forward(self, b: Batch, model):
        c = self.config
        if b.labels is None:
            raise ConfigError("dhd: the batch has no class labels")
        target = F.one_hot(b.labels, self.proxies.shape[0]).to(b.img.dtype)
        weak, strong = feature_views(b.img_in.to(b.img.dtype), None, weak_noise=c.weak_noise,
                                     strong_noise=c.strong_noise, strong_dropout=c.strong_dropout)
        h_t = self.image_head(model.encode_image(weak))
        h_s = self.image_head(model.encode_image(strong))
        hp = proxy_loss(h_t, self.proxies, target, c.temperature)
        hd = distill_loss(h_s, h_t)
        q = quantization_loss(h_t, c.quant_std)
        total = hp + c.lambda_distill * hd + c.lambda_quant * q
        logs = {"proxy": float(hp.detach()), "distill": float(hd.detach()), "quant": float(q.detach()),
                "bit_balance": float((h_t.detach() >= 0).float().mean())}
        if self.text_head is not None:
            h_x = self.text_head(b.txt)
            tp = proxy_loss(h_x, self.proxies, target, c.temperature)
            total = total + c.lambda_text * (tp + c.lambda_quant * quantization_loss(h_x, c.quant_std))
            logs["text_proxy"] = float(tp.detach())
        return total, logs

    def export_heads(self):
        heads = {"image": self.image_head}
        if self.text_head is not None:
            heads["text"] = self.text_head
        return {"hash": ({"dim": self.info.dim, "bits": self.config.bits, "text": self.text_head is not None},
                         nn.ModuleDict(heads))}

