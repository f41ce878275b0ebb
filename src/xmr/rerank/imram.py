"""``imram:<dir>``: IMRAM — Iterative Matching with Recurrent Attention Memory (Chen et al., CVPR 2020, "IMRAM:
Iterative Matching with Recurrent Attention Memory for Cross-Modal Image-Text Retrieval"), as a re-ranker over a
frozen encoder's tokens. The formulas below are the paper's units (named as the paper names them; its full text was
not at hand here, so they follow our reading of the paper and of the SCAN-style reference code).

Fragments: the image's patch tokens are the regions ``V = {v_1..v_m}``, the caption's real tokens the words
``T = {t_1..t_n}``; both are mapped to a joint space by a linear layer and L2-normalised (the paper's region FC /
word GRU encoders are replaced by these projections over the frozen token encoder). For a query set ``X`` attending
to a context set ``Y`` (``X = T, Y = V``: Text-IMRAM; ``X = V, Y = T``: Image-IMRAM):

* **Cross-modal Attention Unit** (CAU): ``s_ij = cos(x_i, y_j)``; ``s̄_ij = [s_ij]_+ /
  sqrt(sum_i [s_ij]_+^2)`` (the clipped L2 norm over the query fragments, as in the SCAN / IMRAM reference code);
  ``α_ij = softmax_j(λ s̄_ij)``; attended context ``c_i = sum_j α_ij y_j``.
* **Memory Distillation Unit** (MDU): ``g_i = σ(W_g [x_i; c_i] + b_g)``, ``o_i = tanh(W_o [x_i; c_i] + b_o)``,
  ``x_i* = g_i ⊙ x_i + (1 - g_i) ⊙ o_i``: the query fragments are refined and attend again (the context stays).
* **Iterative matching**: step ``k`` scores ``F_k(I, T) = mean_i cos(x_i^k, c_i^k)``; the matching score
  is ``F(I, T) = sum_{k=1}^{K} F_k(I, T)``; Full IMRAM (``directions="both"``) adds the Text-IMRAM and
  Image-IMRAM scores. With ``K = 1`` it is one attention step (SCAN's score with mean pooling).

Training (:func:`xmr.rerank.training.train_matcher`, loss ``hinge``): the paper's bidirectional triplet loss with
the hardest negative; deviations: negatives are the dual encoder's hard items of each caption instead of the
mini-batch's, only the caption-anchored direction, and the frozen encoder's tokens instead of Faster R-CNN region
features and a trained GRU. The MDU's weights are shared across the K steps (one MDU per direction), as in the
reference code. Scores lie in ``[-2K, 2K]`` (cosine sums), not log-odds: tune ``--rerank-alpha`` accordingly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import config_from_dict
from ..errors import ConfigError
from . import RERANKERS
from .tokens import TokenMatcher, load_token_reranker, masked_mean

_FORMAT = "xmr-imram-matcher"
DIRECTIONS = ("text", "image", "both")


@dataclass(frozen=True)
class IMRAMConfig:
    width: int  # token width of the encoder
    encoder: str = "tiny"  # spec of the token encoder
    dim: int = 64  # joint space width
    steps: int = 3  # K, matching steps
    smooth: float = 9.0  # λ, inverse temperature of the attention softmax
    directions: str = "both"  # "text" (Text-IMRAM: words attend to regions), "image" (Image-IMRAM) or "both"
    class_token: bool = False  # also use the image's class token as a region
    seed: int = 0  # initialisation seed (the global RNG is left untouched)

    #: ranges a config.json is held to before any tensor is allocated (xmr.config.check_values)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"width": (1, 4096), "dim": (1, 4096), "steps": (1, 16),
                                                        "smooth": (0.0, 1000.0)}

    def __post_init__(self):
        if self.width < 1 or self.dim < 1 or self.steps < 1:
            raise ConfigError(f"IMRAMConfig: width, dim and steps must be positive: {self}")
        if self.directions not in DIRECTIONS:
            raise ConfigError(f"IMRAMConfig: directions must be one of {DIRECTIONS}, got {self.directions!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "IMRAMConfig":
        return config_from_dict(cls, d)


def attend(query: torch.Tensor, qmask: torch.Tensor, context: torch.Tensor, cmask: torch.Tensor,
           smooth: float) -> torch.Tensor:
    """Cross-modal attention unit: (B, n, d) query fragments attend to (B, m, d) context -> (B, n, d) ``c_i``."""
    s = F.normalize(query, dim=-1) @ F.normalize(context, dim=-1).transpose(1, 2)  # (B, n, m) cosines
    s = s.clamp(min=0) * (qmask[:, :, None] & cmask[:, None, :]).to(s.dtype)
    # clipped L2 norm over the query fragments; the 1e-16 inside the root keeps the gradient finite when a context
    # fragment matches no real query fragment (a column of zeros: sqrt'(0) is infinite, and the NaN would reach
    # the padded fragments' weights through the mask)
    s = s / (s.pow(2).sum(dim=1, keepdim=True) + 1e-16).sqrt()
    a = torch.softmax((smooth * s).masked_fill(~cmask[:, None, :], float("-inf")), dim=-1)
    return a @ context


class MemoryDistillation(nn.Module):
    """``x* = g ⊙ x + (1 - g) ⊙ tanh(W_o [x; c] + b_o)``, ``g = σ(W_g [x; c] + b_g)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate, self.update = nn.Linear(2 * dim, dim), nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        xc = torch.cat([x, c], dim=-1)
        g = torch.sigmoid(self.gate(xc))
        return g * x + (1 - g) * torch.tanh(self.update(xc))


def iterative_matching(x, xmask, y, ymask, mdu: MemoryDistillation, steps: int, smooth: float) -> torch.Tensor:
    """(B, K) step scores ``F_k = mean_i cos(x_i^k, c_i^k)`` of query ``x`` against context ``y``."""
    out = []
    for k in range(steps):
        c = attend(x, xmask, y, ymask, smooth)
        out.append(masked_mean(F.cosine_similarity(x, c, dim=-1), xmask))
        if k + 1 < steps:
            x = mdu(x, c)
    return torch.stack(out, dim=1)


class IMRAMMatcher(TokenMatcher):
    """``forward(text (B, L, W), mask (B, L), image (B, N, W)) -> (B,)`` IMRAM scores ``sum_k F_k``."""

    NAME = "imram"
    FORMAT = _FORMAT
    Config = IMRAMConfig
    default_loss = "hinge"

    def __init__(self, config: IMRAMConfig):
        super().__init__(config)
        c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.text_proj, self.image_proj = nn.Linear(c.width, c.dim), nn.Linear(c.width, c.dim)
            self.mdu_text, self.mdu_image = MemoryDistillation(c.dim), MemoryDistillation(c.dim)

    def step_scores(self, text: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"text": (B, K), "image": (B, K)} step scores of the configured directions."""
        c = self.config
        regions = image if c.class_token else image[:, 1:]
        t = F.normalize(self.text_proj(text), dim=-1)
        v = F.normalize(self.image_proj(regions), dim=-1)
        vmask = torch.ones(v.shape[:2], dtype=torch.bool, device=v.device)
        mask = mask.to(torch.bool)
        out = {}
        if c.directions in ("text", "both"):
            out["text"] = iterative_matching(t, mask, v, vmask, self.mdu_text, c.steps, c.smooth)
        if c.directions in ("image", "both"):
            out["image"] = iterative_matching(v, vmask, t, mask, self.mdu_image, c.steps, c.smooth)
        return out

    def forward(self, text: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return sum(s.sum(dim=1) for s in self.step_scores(text, mask, image).values())


@RERANKERS.register("imram", help="IMRAM (Chen et al. 2020) iterative recurrent-attention matcher over tiny "
                    "tokens: imram:DIR")
def _factory(arg: str, device: str | None = None):
    return load_token_reranker(IMRAMMatcher, arg)


__all__ = ["DIRECTIONS", "IMRAMConfig", "IMRAMMatcher", "MemoryDistillation", "attend", "iterative_matching"]
