"""``miles``: masked visual modelling with injected language semantics, plus the video-text contrastive loss.

Ge et al., "MILES: Visual BERT Pre-training with Injected Language Semantics for Video-text Retrieval", ECCV 2022
(arXiv 2204.12408). A dual encoder (video encoder ``f_v``, text encoder ``f_t``) is trained with

* the video-text contrastive loss on clean clips (the dual-encoder objective MILES builds on, Frozen-in-Time /
  CLIP style): symmetric InfoNCE over the batch, ``L_vtc = (CE(s V T^T) + CE(s T V^T)) / 2`` with a learned scale
  ``s`` (as :mod:`.infonce`);
* masked visual modelling (MVM): the clip's space-time patch grid is corrupted by **blockwise masking in space and
  time** (:func:`space_time_block_mask`: cuboids of patches, ``h x w`` patches over ``t`` consecutive frames, until
  ``mask_ratio`` of the ``T x P`` patches are masked; a masked patch's embedding is replaced by a learned mask
  embedding before the position embeddings, as in BEiT); the video encoder reads the corrupted clip, and a
  regression head ``g`` (one linear layer) maps its output token at every masked position to the output token a
  **snapshot video encoder** ``f_v'`` gives at that position for the *uncorrupted* clip:
  ``L_mvm = mean over masked (b, i) of |g(f_v(x~_b))_i - sg(f_v'(x_b))_i|`` (``regression``: l1 by default,
  averaged over the W entries too; ``target_norm``: targets layer-normalised without affine first);
* the snapshot encoder is not trained by gradients: after every step it follows the video encoder as an
  exponential moving average, ``theta' <- m theta' + (1 - m) theta``. Because the video encoder is trained by
  ``L_vtc`` to be aligned with text, the snapshot's token features carry language semantics ("injected") and evolve
  with it, which is what makes them better regression targets than pixels or a fixed tokenizer.

Total: ``L = L_vtc + mvm_weight * L_mvm``.

What could be checked here, and deviations: the abstract and the public MCQ/MILES repository (which holds only the
video encoder and evaluation code, no pre-training loop) were read; the method section was not available offline,
so this docstring cannot cite the paper's equation numbers, and the regression norm (``l1``), the linear regression
head, the use of final-layer (final-normed) tokens as targets, their parameter-free layer normalisation
(``target_norm``, borrowed from data2vec / MaskFeat so the encoder cannot shrink its targets towards zero), the mask
ratio and the block-size rule are choices made here, each a Config field. The video encoder is
:mod:`xmr.encoders.tiny_video` (joint space-time attention instead of Frozen's divided attention; tiny sizes),
trained from scratch or from a ``tiny`` image-text start, not from an ImageNet ViT; the text encoder is the
tiny byte-level transformer, not DistilBERT. Masks are drawn with numpy from a seed taken from torch's global
generator, which every checkpoint saves, so a resumed run masks exactly as an uninterrupted one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...registries import LOSSES
from .base import Batch, LossInfo, TrainLoss, ema_update, frozen_copy, symmetric_ce

REGRESSIONS = ("l1", "l2", "smooth_l1")


def space_time_block_mask(batch: int, frames: int, grid: int, ratio: float, rng: np.random.Generator, *,
                          min_block: int = 2, max_attempts: int = 50) -> np.ndarray:
    """(batch, frames, grid * grid) bool: for every clip exactly ``round(ratio * frames * grid^2)`` patches masked.

    Blocks (BEiT's blockwise masking carried into time): a block's size ``s`` patches is drawn uniformly from
    ``[min_block, still to mask]``, its temporal extent ``t`` from ``1 .. frames``, its spatial aspect ratio from
    log-uniform ``[0.3, 1 / 0.3]``; ``h x w ~ s / t`` patches (each clipped to ``1 .. grid``) at a random place,
    over ``t`` consecutive frames. A block that would mask more than the target is redrawn (up to ``max_attempts``
    draws); any shortfall left is topped up with single random patches, so every clip has the same count."""
    n = frames * grid * grid
    target = int(round(ratio * n))
    out = np.zeros((batch, frames, grid, grid), bool)
    for b in range(batch):
        m = out[b]
        count, attempts = 0, 0
        while count < target and attempts < max_attempts:
            attempts += 1
            left = target - count
            s = int(rng.integers(min(min_block, left), left + 1))
            t = int(rng.integers(1, frames + 1))
            aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
            area = s / t
            h = int(np.clip(round(math.sqrt(area * aspect)), 1, grid))
            w = int(np.clip(round(math.sqrt(area / aspect)), 1, grid))
            f0 = int(rng.integers(0, frames - t + 1))
            y0 = int(rng.integers(0, grid - h + 1))
            x0 = int(rng.integers(0, grid - w + 1))
            block = m[f0: f0 + t, y0: y0 + h, x0: x0 + w]
            new = int((~block).sum())
            if new == 0 or count + new > target:
                continue
            block[...] = True
            count += new
        if count < target:
            free = np.flatnonzero(~m.reshape(-1))
            m.reshape(-1)[rng.choice(free, size=target - count, replace=False)] = True
    return out.reshape(batch, frames, grid * grid)


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """(M, W), (M, W) -> scalar: the mean over all M x W entries of |d| (l1), d^2 (l2) or Huber(d, beta 1)
    (smooth_l1), d = pred - target; 0 when M = 0 (no masked token)."""
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    d = pred - target
    if kind == "l1":
        return d.abs().mean()
    if kind == "l2":
        return (d * d).mean()
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target, beta=1.0)
    raise ConfigError(f"miles: regression must be one of {', '.join(REGRESSIONS)}, got {kind!r}")


@LOSSES.register("miles", help="MILES: masked space-time video modelling regressing a text-aligned EMA snapshot "
                 "encoder's tokens, + video-text InfoNCE (Ge et al. 2022; video data, --mode full)")
class MILESLoss(TrainLoss):
    @dataclass(frozen=True)
    class Config:
        mask_ratio: float = 0.5  # share of the T x P space-time patches masked per clip
        min_block: int = 2  # smallest block (patches) the blockwise masking draws
        momentum: float = 0.99  # m of the snapshot encoder's EMA
        mvm_weight: float = 1.0  # weight of L_mvm against L_vtc
        regression: str = "l1"  # l1, l2 or smooth_l1 (averaged over the masked tokens' entries)
        target_norm: bool = True  # layer-normalise (no affine) the snapshot's target tokens (data2vec / MaskFeat)
        init_temperature: float = 0.07  # L_vtc's initial temperature (scale = 1 / temperature)
        learn_temperature: bool = True
        max_scale: float = 100.0

        def __post_init__(self):
            if not 0.0 < self.mask_ratio < 1.0:
                raise ConfigError(f"miles: mask_ratio must be in (0, 1), got {self.mask_ratio}")
            if not 0.0 <= self.momentum < 1.0:
                raise ConfigError(f"miles: momentum must be in [0, 1), got {self.momentum}")
            if self.regression not in REGRESSIONS:
                raise ConfigError(f"miles: regression must be one of {', '.join(REGRESSIONS)}, got "
                                  f"{self.regression!r}")
            if self.min_block < 1 or self.mvm_weight < 0 or self.init_temperature <= 0:
                raise ConfigError("miles: need min_block >= 1, mvm_weight >= 0, init_temperature > 0")

    def __init__(self, config, model, info: LossInfo):
        super().__init__(config, model, info)
        if not hasattr(model, "video_tokens"):
            raise ConfigError("--loss miles trains a video encoder from its space-time patch tokens: give a video "
                              "data set (e.g. `xmr synth videos`) with --mode full --model tiny (or a trained:DIR "
                              "video run)")
        width = int(model.token_width)
        self.frames, self.grid = int(model.frames), int(model.grid)
        self.snapshot = frozen_copy(model)  # f_v': starts as the video encoder, then follows it by EMA
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(info.seed + 47)
            self.mask_embedding = nn.Parameter(torch.randn(width) * 0.02)
            self.head = nn.Linear(width, width)  # g: the regression head
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / config.init_temperature)),
                                      requires_grad=config.learn_temperature)

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.config.max_scale)

    def draw_mask(self, batch: int, device) -> torch.Tensor:
        """(batch, T, P) bool, from a seed drawn from torch's global generator (saved in checkpoints)."""
        seed = int(torch.randint(0, 2 ** 62, (1,)).item())
        m = space_time_block_mask(batch, self.frames, self.grid, self.config.mask_ratio,
                                  np.random.default_rng(seed), min_block=self.config.min_block)
        return torch.from_numpy(m).to(device)

    def mvm(self, model, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L_mvm of clips ``x`` (B, T, 3, S, S) under ``mask`` (B, T, P)."""
        student = model.video_tokens(x, mask, self.mask_embedding)[:, 1:]  # (B, T * P, W), corrupted clip
        with torch.no_grad():
            self.snapshot.eval()
            target = self.snapshot.video_tokens(x)[:, 1:].float()  # the clean clip through the snapshot encoder
            if self.config.target_norm:
                target = F.layer_norm(target, target.shape[-1:])
        flat = mask.flatten(1)
        return regression_loss(self.head(student[flat]).float(), target[flat].float(), self.config.regression)

    def forward(self, b: Batch, model):
        s = self.scale()
        l_vtc = symmetric_ce(s * b.img @ b.txt.T)
        l_mvm = self.mvm(model, b.img_in, self.draw_mask(b.img_in.shape[0], b.img_in.device))
        loss = l_vtc + self.config.mvm_weight * l_mvm
        return loss, {"vtc": float(l_vtc.detach()), "mvm": float(l_mvm.detach()), "scale": float(s.detach())}

    @torch.no_grad()
    def after_step(self, model) -> None:
        ema_update(self.snapshot, model, self.config.momentum)
