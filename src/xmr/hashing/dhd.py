"""DHD: Deep Hash Distillation (Jang et al., "Deep Hash Distillation for Image Retrieval", ECCV 2022).

A hash head turns a tower's pooled feature into a ``B``-bit code. Training (paper Sec. 3, reference code
youngkyunJang/Deep-Hash-Distillation ``main_DHD.py`` / ``loss.py``):

* **Hash head**: ``h = tanh(LayerNorm(W x))`` (bias-free linear layer); the code is ``sign(h)``.
* **Proxy-based similarity learning** (Eq. 3-4): one learnable proxy ``p_c`` per class in the same ``B``-dim
  space; ``L_HP = −Σ_c ŷ_c log softmax_c(cos(h, p_c) / τ)``, with ``ŷ`` the label vector normalised to sum 1
  (multi-label targets spread evenly over their classes).
* **Self-distillation** (Eq. 6): the code of a weakly transformed view (teacher ``h_T``) teaches the code of a
  strongly transformed one (student ``h_S``): ``L_HD = 1 − cos(h_S, stopgrad(h_T))``.
* **BCE quantization** (Eq. 7): with Gaussian kernels ``g±(h) = exp(−½((h ∓ 1)/σ)²)`` and target
  ``y = (sign(h) + 1)/2``: ``L_Q = BCE(g+(h), y) + BCE(g−(h), 1 − y)``, pulling each entry to ±1.
* Total: ``L = L_HP(h_T) + λ1·L_HD(h_S, h_T) + λ2·L_Q(h_T)`` (λ1 = λ2 = 0.1, τ = 0.2 in the reference defaults).

Deviations, on purpose:

* **Views on frozen features.** The paper's views are pixel augmentations through a fine-tuned backbone; here the
  head sits on a frozen tower's pooled features, so the caller supplies the two views' features. With pixel
  views encoded once each (cached) it is the paper's setup minus backbone fine-tuning; :func:`feature_views`
  gives feature-level weak / strong views (Gaussian noise + dropout) for when only one feature per item exists.
* **A text head (cross-modal).** DHD is image-to-image. For text queries, :class:`DHD` has an optional second head
  for the text tower trained with the *same* proxies (``L_HP`` on text features), so text and image codes meet
  in one Hamming space. Without ``text_dim`` it is the paper's unimodal model.
* The reference's ``std`` default is not stated in the paper; here ``quant_std = 0.5``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

BITS = (16, 32, 64, 128)


@dataclass(frozen=True)
class DHDConfig:
    in_dim: int  # width of the (image) tower's pooled features
    num_classes: int  # number of labels (one proxy each)
    bits: int = 64  # code length; one of BITS
    text_dim: int = 0  # width of the text tower's features; 0 = no text head (image-to-image, as in the paper)
    temperature: float = 0.2  # τ of the proxy softmax
    lambda_distill: float = 0.1  # λ1
    lambda_quant: float = 0.1  # λ2
    quant_std: float = 0.5  # σ of the Gaussian kernels of the BCE quantization loss

    def __post_init__(self):
        for name in ("in_dim", "num_classes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"DHDConfig.{name} must be a positive integer, got {v!r}")
        if self.bits not in BITS:
            raise ConfigError(f"DHDConfig.bits must be one of {BITS}, got {self.bits!r}")
        if isinstance(self.text_dim, bool) or not isinstance(self.text_dim, int) or self.text_dim < 0:
            raise ConfigError(f"DHDConfig.text_dim must be an integer >= 0, got {self.text_dim!r}")
        if self.temperature <= 0 or self.quant_std <= 0:
            raise ConfigError("DHDConfig.temperature and quant_std must be > 0")
        if self.lambda_distill < 0 or self.lambda_quant < 0:
            raise ConfigError("DHDConfig lambdas must be >= 0")


class HashHead(nn.Module):
    """(B, in_dim) -> (B, bits) relaxed codes in (−1, 1): ``tanh(LayerNorm(W x))``."""

    def __init__(self, in_dim: int, bits: int):
        super().__init__()
        self.proj = nn.Linear(in_dim, bits, bias=False)
        self.norm = nn.LayerNorm(bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.norm(self.proj(x)))


def proxy_loss(h: torch.Tensor, proxies: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """L_HP: cross-entropy between sum-normalised labels and softmax(cos(h, proxies) / τ)."""
    if labels.shape != (h.shape[0], proxies.shape[0]):
        raise ConfigError(f"labels must be (batch, num_classes) = {(h.shape[0], proxies.shape[0])}, "
                          f"got {tuple(labels.shape)}")
    counts = labels.sum(1, keepdim=True)
    if (counts == 0).any():
        raise ConfigError("every training item needs at least one label for the proxy loss")
    target = labels / counts
    logits = F.normalize(h, dim=-1) @ F.normalize(proxies, dim=-1).T / temperature
    return (-(target * F.log_softmax(logits, -1)).sum(-1)).mean()


def distill_loss(h_student: torch.Tensor, h_teacher: torch.Tensor) -> torch.Tensor:
    """L_HD = mean(1 − cos(h_S, stopgrad(h_T)))."""
    return (1 - F.cosine_similarity(h_student, h_teacher.detach(), dim=-1)).mean()


def quantization_loss(h: torch.Tensor, std: float) -> torch.Tensor:
    """L_Q: BCE between Gaussian-kernel memberships of ±1 and the current sign."""
    g_pos = torch.exp(-0.5 * ((h - 1.0) / std) ** 2)
    g_neg = torch.exp(-0.5 * ((h + 1.0) / std) ** 2)
    y = (h.sign().detach() + 1.0) / 2.0
    eps = 1e-7
    g_pos, g_neg = g_pos.clamp(eps, 1 - eps), g_neg.clamp(eps, 1 - eps)
    return F.binary_cross_entropy(g_pos, y) + F.binary_cross_entropy(g_neg, 1 - y)


class DHD(nn.Module):
    """Image hash head (+ optional text hash head) and the class proxies."""

    def __init__(self, cfg: DHDConfig):
        super().__init__()
        self.cfg = cfg
        self.image_head = HashHead(cfg.in_dim, cfg.bits)
        self.text_head = HashHead(cfg.text_dim, cfg.bits) if cfg.text_dim else None
        proxies = torch.empty(cfg.num_classes, cfg.bits)
        nn.init.xavier_uniform_(proxies, gain=nn.init.calculate_gain("tanh"))
        self.proxies = nn.Parameter(proxies)

    def loss(self, weak: torch.Tensor, strong: torch.Tensor, labels: torch.Tensor,
             text: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Weak and strong views' features (B, in_dim), labels (B, C) multi-hot, optionally paired text features."""
        c = self.cfg
        h_t = self.image_head(weak)
        h_s = self.image_head(strong)
        hp = proxy_loss(h_t, self.proxies, labels.float(), c.temperature)
        hd = distill_loss(h_s, h_t)
        q = quantization_loss(h_t, c.quant_std)
        total = hp + c.lambda_distill * hd + c.lambda_quant * q
        out = {"proxy": hp.detach(), "distill": hd.detach(), "quant": q.detach()}
        if text is not None:
            if self.text_head is None:
                raise ConfigError("this DHD model has no text head (text_dim=0)")
            h_txt = self.text_head(text)
            tp = proxy_loss(h_txt, self.proxies, labels.float(), c.temperature)
            tq = quantization_loss(h_txt, c.quant_std)
            total = total + tp + c.lambda_quant * tq
            out["text_proxy"] = tp.detach()
        out["loss"] = total
        return out

    @torch.no_grad()
    def codes(self, features: torch.Tensor, modality: str = "image") -> np.ndarray:
        """(B, dim) features -> (B, bits) uint8 bits (1 where the relaxed code is >= 0)."""
        if modality == "image":
            head = self.image_head
        elif modality == "text" and self.text_head is not None:
            head = self.text_head
        else:
            raise ConfigError(f"no {modality!r} hash head (modalities: image" + (", text)" if self.text_head else ")"))
        return (head(features) >= 0).to(torch.uint8).numpy()


def feature_views(x: torch.Tensor, generator: torch.Generator | None, *, weak_noise: float = 0.05,
                  strong_noise: float = 0.3, strong_dropout: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Weak and strong feature-level views of a batch (see the module docstring's first deviation); ``generator``
    None draws from torch's global RNG (the trainer's, which its checkpoints keep)."""
    if not 0 <= strong_dropout < 1:
        raise ConfigError(f"strong_dropout must be in [0, 1), got {strong_dropout}")
    kw = {"generator": generator, "device": x.device} if generator is None else {"generator": generator}
    scale = x.detach().std().clamp_min(1e-6)
    weak = x + weak_noise * scale * torch.randn(x.shape, **kw).to(x.device, x.dtype)
    keep = (torch.rand(x.shape, **kw) >= strong_dropout).to(x.device, x.dtype) / (1 - strong_dropout)
    strong = (x + strong_noise * scale * torch.randn(x.shape, **kw).to(x.device, x.dtype)) * keep
    return weak, strong


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(N, B) 0/1 -> (N, B/8) uint8, the layout FAISS binary indexes take (``IndexBinaryFlat``)."""
    arr = np.asarray(bits)
    if arr.ndim != 2 or arr.shape[1] % 8:
        raise ConfigError(f"codes must be (N, bits) with bits a multiple of 8, got shape {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ConfigError("codes must hold 0/1 bits")
    return np.packbits(arr.astype(np.uint8), axis=1)
