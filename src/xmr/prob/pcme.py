"""PCME: Probabilistic Cross-Modal Embeddings (Chun et al., "Probabilistic Embeddings for Cross-Modal
Retrieval", CVPR 2021), as heads over any pair of towers' pooled features.

What is implemented (equation numbers of the paper):

* **Embedding** (Sec. 3.2): an input is ``N(μ, diag(σ²))``; ``μ`` is L2-normalised (as the reference code does),
  ``log σ`` comes from its own head. ``K`` samples ``z = μ + ε·σ``, ``ε ~ N(0, I)`` (reparameterisation).
* **Match probability** (Eq. 2): ``p(m|x, y) ≈ 1/K² Σ σ(−a‖z_x − z_y‖₂ + b)`` - the same formula as
  :func:`xmr.eval.match_probability` (numpy, for evaluation); here in torch, for training.
* **Soft contrastive loss** (Eq. 3): every pair in the batch is a positive (``i = j``) or a negative; the loss is
  the summed negative log of the Monte-Carlo match probability, ``−log p`` for positives and ``−log(1 − p)`` for
  negatives, computed in log space (log-sum-exp over the K² sample pairs, as the reference does).
* **VIB prior** (Eq. 5): ``β · (KL(N(μ_img, σ_img²) ‖ N(0, I)) + KL(N(μ_txt, σ_txt²) ‖ N(0, I)))``.

Deviations, each on purpose:

* The towers' *pooled* features go into two linear heads (``μ`` and ``log σ``); PCME's local-attention
  uncertainty modules (Sec. 3.3, over CNN grid / word features) are not reproduced - any tower's pooled output
  plugs in, frozen or not.
* ``σ(s)`` is the logistic sigmoid, as written in the paper. The reference code's ``exp(s) / (exp(s) + exp(−s))``
  equals ``σ(2s)``: its ``a, b`` are half of the values that give the same probabilities here.
* The reference computes the same all-pairs loss twice (image->caption and caption->image pairs hold the same
  distances) and adds them; this module computes it once and multiplies by 2, which is equal.
* KL term (``kl=``): ``"reference"`` (default) is the reference code's
  ``−½ Σ (1 + log σ − μ² − exp(log σ))``, which reads the head's output as a log-variance although the sampling
  uses it as a log standard deviation; ``"exact"`` is the Gaussian KL for ``σ = exp(log σ)``. With the paper's
  ``β = 1e-5`` the difference is small; both are here so a user can match either.
* No uniformity loss (the reference's ``uniform_lambda`` defaults to 0 for PCME).

DAA (:mod:`xmr.prob.daa`) plugs in through ``daa_beta`` (see :meth:`PCME.loss`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .daa import daa_loss


@dataclass(frozen=True)
class PCMEConfig:
    image_dim: int  # width of the image tower's pooled features
    text_dim: int  # width of the text tower's pooled features
    embed_dim: int = 64  # width of the probabilistic embedding space
    num_samples: int = 7  # K samples per input (the paper's J; 7 in the reference configs)
    init_a: float = 15.0  # initial distance scale a (> 0), learned; the reference's init_negative_scale
    init_b: float = 15.0  # initial shift b, learned; the reference's init_shift
    vib_beta: float = 1e-5  # weight of the KL prior (the reference's vib_beta)
    kl: str = "reference"  # "reference" | "exact", see the module docstring
    init_log_sigma: float = -3.0  # bias of the log-sigma heads at initialisation (small variances first)
    probabilistic: bool = True  # False: the deterministic counterpart (σ = 0, one "sample" = μ, no KL term)
    daa_beta: float = 0.0  # weight of the DAA loss (xmr.prob.daa) per direction; > 0 needs a semantic relevance
    daa_temperature: float = 0.01  # τ of DAA's soft ranks

    def __post_init__(self):
        for name in ("image_dim", "text_dim", "embed_dim", "num_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"PCMEConfig.{name} must be a positive integer, got {v!r}")
        if self.init_a <= 0:
            raise ConfigError("PCMEConfig.init_a must be > 0")
        if self.daa_beta < 0 or self.daa_temperature <= 0:
            raise ConfigError("PCMEConfig.daa_beta must be >= 0 and daa_temperature > 0")
        if self.vib_beta < 0:
            raise ConfigError("PCMEConfig.vib_beta must be >= 0")
        if self.kl not in ("reference", "exact"):
            raise ConfigError("PCMEConfig.kl must be 'reference' or 'exact'")


class ProbabilisticHead(nn.Module):
    """Pooled features (B, in_dim) -> (μ (B, D) unit-norm, log σ (B, D))."""

    def __init__(self, in_dim: int, embed_dim: int, init_log_sigma: float):
        super().__init__()
        self.mu = nn.Linear(in_dim, embed_dim)
        self.log_sigma = nn.Linear(in_dim, embed_dim)
        nn.init.zeros_(self.log_sigma.weight)
        nn.init.constant_(self.log_sigma.bias, init_log_sigma)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(self.mu(x), dim=-1), self.log_sigma(x)


def sample(mu: torch.Tensor, log_sigma: torch.Tensor, num_samples: int,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, D) mean and log std -> (B, K, D) samples ``μ + ε·exp(log σ)``."""
    eps = torch.randn((mu.shape[0], num_samples, mu.shape[1]), dtype=mu.dtype, device=mu.device,
                      generator=generator)
    return mu.unsqueeze(1) + eps * log_sigma.exp().unsqueeze(1)


def pair_logits(za: torch.Tensor, zb: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, K, D), (M, K', D) -> (N, M, K·K') logits ``−a·‖z − z'‖ + b`` for every pair of inputs and samples."""
    n, k, d = za.shape
    m, k2, _ = zb.shape
    diff = za.reshape(n, 1, k, 1, d) - zb.reshape(1, m, 1, k2, d)
    dist = torch.sqrt((diff * diff).sum(-1) + 1e-12)  # epsilon only keeps the gradient finite at distance 0
    return (-a * dist + b).reshape(n, m, k * k2)


def log_match_probability(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, S) sample-pair logits -> (log p, log(1 − p)) of the Monte-Carlo match probability (Eq. 2)."""
    s = logits.shape[-1]
    log_p = (F.logsigmoid(logits)).logsumexp(-1) - math.log(s)
    log_not_p = (F.logsigmoid(-logits)).logsumexp(-1) - math.log(s)
    return log_p, log_not_p


def soft_contrastive_loss(img_samples: torch.Tensor, txt_samples: torch.Tensor, a: torch.Tensor,
                          b: torch.Tensor) -> torch.Tensor:
    """Eq. (3) summed over all N² pairs of a batch (pair (i, i) matched), counted for both directions."""
    return _soft_contrastive(img_samples, txt_samples, a, b)[0]


def _soft_contrastive(img_samples, txt_samples, a, b, matched: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, log match probability (N, N), images x captions). ``matched`` (N, N) bool marks the matching pairs
    (default: the diagonal)."""
    if img_samples.shape[0] != txt_samples.shape[0]:
        raise ConfigError(f"{img_samples.shape[0]} images but {txt_samples.shape[0]} captions in the batch")
    log_p, log_not_p = log_match_probability(pair_logits(img_samples, txt_samples, a, b))
    if matched is None:
        matched = torch.eye(img_samples.shape[0], dtype=torch.bool, device=img_samples.device)
    nll = torch.where(matched, -log_p, -log_not_p)
    return 2.0 * nll.sum(), log_p


def kl_prior(mu: torch.Tensor, log_sigma: torch.Tensor, kind: str = "reference") -> torch.Tensor:
    if kind == "reference":
        return -0.5 * (1 + log_sigma - mu.pow(2) - log_sigma.exp()).sum()
    return 0.5 * ((2 * log_sigma).exp() + mu.pow(2) - 1 - 2 * log_sigma).sum()


class PCME(nn.Module):
    """Two probabilistic heads and the learned (a, b) of the match probability."""

    def __init__(self, cfg: PCMEConfig):
        super().__init__()
        self.cfg = cfg
        self.image_head = ProbabilisticHead(cfg.image_dim, cfg.embed_dim, cfg.init_log_sigma)
        self.text_head = ProbabilisticHead(cfg.text_dim, cfg.embed_dim, cfg.init_log_sigma)
        self.log_a = nn.Parameter(torch.tensor(math.log(cfg.init_a)))  # a = exp(log_a) stays > 0
        self.b = nn.Parameter(torch.tensor(float(cfg.init_b)))

    @property
    def a(self) -> torch.Tensor:
        return self.log_a.exp()

    def loss(self, image_features: torch.Tensor, text_features: torch.Tensor,
             generator: torch.Generator | None = None, semantic: torch.Tensor | None = None
             ) -> dict[str, torch.Tensor]:
        """Batch of paired pooled features -> {"loss", "match", "kl", "daa"}.

        ``loss = match + vib_beta·kl + daa_beta·(DAA(images->captions) + DAA(captions->images))``; the DAA terms
        rank the batch's match probabilities against ``semantic`` (B, B) relevance (image i, caption j)."""
        mu_i, ls_i = self.image_head(image_features)
        mu_t, ls_t = self.text_head(text_features)
        if self.cfg.probabilistic:
            k = self.cfg.num_samples
            zi, zt = sample(mu_i, ls_i, k, generator), sample(mu_t, ls_t, k, generator)
            kl = kl_prior(mu_i, ls_i, self.cfg.kl) + kl_prior(mu_t, ls_t, self.cfg.kl)
        else:
            zi, zt, kl = mu_i.unsqueeze(1), mu_t.unsqueeze(1), torch.zeros(())
        match, log_p = _soft_contrastive(zi, zt, self.a, self.b)
        total = match + self.cfg.vib_beta * kl
        daa = torch.zeros(())
        if self.cfg.daa_beta > 0:
            if semantic is None:
                raise ConfigError("daa_beta > 0 needs the batch's semantic relevance (semantic=)")
            p = log_p.exp()
            tau = self.cfg.daa_temperature
            daa = daa_loss(p, semantic, tau) + daa_loss(p.T, semantic.T, tau)
            total = total + self.cfg.daa_beta * daa
        return {"loss": total, "match": match.detach(), "kl": kl.detach(), "daa": daa.detach()}

    @torch.no_grad()
    def embed(self, features: torch.Tensor, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in_dim) -> (μ, log σ) for ``modality`` "image" or "text"."""
        if modality not in ("image", "text"):
            raise ConfigError(f"modality must be 'image' or 'text', got {modality!r}")
        head = self.image_head if modality == "image" else self.text_head
        return head(features)

    @torch.no_grad()
    def samples(self, features: torch.Tensor, modality: str, generator: torch.Generator | None = None
                ) -> torch.Tensor:
        """(B, in_dim) -> (B, K, D) samples for evaluation (``K = 1``, the mean, when not probabilistic)."""
        mu, log_sigma = self.embed(features, modality)
        if not self.cfg.probabilistic:
            return mu.unsqueeze(1)
        return sample(mu, log_sigma, self.cfg.num_samples, generator)

    @staticmethod
    def uncertainty(log_sigma: torch.Tensor) -> torch.Tensor:
        """Per-input scalar uncertainty: mean log σ over dimensions (= log of the geometric-mean σ; monotone in
        ``det Σ``, which the paper uses)."""
        return log_sigma.mean(-1)
