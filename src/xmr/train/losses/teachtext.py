"""``teachtext``: the student's own retrieval loss plus distillation of several frozen teachers' similarity matrices.

Croitoru, Bogolin, Leordeanu, Jin, Zisserman, Albanie, Liu, "TeachText: CrossModal Generalized Distillation for
Text-Video Retrieval", ICCV 2021, Fig. 4 and the authors' code (albanie/collaborative-experts,
``trainer/trainer.py``, which is where ``phi``, ``l_d`` and ``lambda`` below were read: the paper's full text was not
reachable here, only its abstract and the Fig. 4 caption). For a batch of B (caption, item) pairs:

* the student ``M`` gives the similarity matrix ``S`` (B x B), ``S_ij = <t_i, v_j>``: caption i against item j;
* teacher ``T_k`` (k = 1..N), a retrieval model with its *own* text embedding and item embedding, gives ``S^k`` the
  same way from its cached embeddings (``t^k_i``, ``v^k_j``: :mod:`xmr.train.teachers`);
* the aggregate ``phi(S^1, ..., S^N) = 1/N sum_k S^k`` (element-wise mean: the authors' trainer sums the teachers'
  matrices and divides by N);
* the distillation loss ``L_d = 1/B^2 sum_ij l_d(S_ij - phi_ij)`` with ``l_d`` the Huber / smooth-L1 function
  (``0.5 x^2 / delta`` for ``|x| < delta``, else ``|x| - 0.5 delta``; delta 1, torch's ``SmoothL1Loss`` in the
  authors' trainer);
* the objective ``L = L_r(S) + lambda * L_d`` with ``L_r`` the student's retrieval loss (the paper: CE's
  max-margin ranking loss; here any registered loss, ``retrieval``, default ``infonce``) and ``lambda = 1`` in the
  authors' code (``lambda_cross``). Teachers are used only in training; the saved model is the student alone.

Deviations: the teachers are frozen xmr encoders (any spec; ``trained:DIR`` for one trained on the task), not models
of the student's architecture; in the paper teachers and student share the video embeddings and differ in their text
embeddings, here a cross-modal teacher scores with its own image embedding too; the default ``L_r`` is InfoNCE, not
CE's max-margin ranking loss (``retrieval="vsepp"`` is the closest hinge).

What is ours (not in the paper):

* **text-only teachers** (an encoder with no image tower, or ``text:SPEC``): they cannot score captions against
  items, so they teach caption-caption structure instead. ``R^k_ij = <t^k_i, t^k_j>``, ``psi`` their mean, and
  ``L_t = 1/(B(B-1)) sum_{i != j} l_d(<t_i, t_j> - psi_ij)`` (the diagonal is 1 for every unit-norm model and
  carries nothing); ``L += lambda_text * L_t``. ``text_from="all"`` adds the cross-modal teachers' caption-caption
  matrices to ``psi``. A batch holds one caption of each of B distinct images, so ``psi`` describes captions of
  different images (which ones are alike), never two captions of one image;
* ``standardize=true`` z-scores the student's and each teacher's matrix over the batch before comparing (teachers
  whose similarities live on other scales, e.g. ``concept``'s Bhattacharyya coefficients in [0, 1] against cosines
  in [-1, 1], then agree on ranks rather than raw values). Off by default (the paper compares raw values);
* ``distance`` ``mse`` / ``l1`` as alternatives to the paper's Huber.

Left out: the paper's extension to video-side modalities (distilling experts that are dropped at test time) and its
data denoising (removing captions the teachers score low).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from ...registries import LOSSES
from .base import Batch, EpochContext, TrainLoss

DISTANCES = ("huber", "mse", "l1")
TEXT_FROM = ("text-only", "all")


def _full(x: torch.Tensor) -> torch.Tensor:
    """Half-precision similarities (under autocast) compared in float32; float32 / float64 kept as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def aggregate(mats: list[torch.Tensor]) -> torch.Tensor:
    """phi: the element-wise mean of the teachers' (B, B) similarity matrices (or of their off-diagonal entries)."""
    if not mats:
        raise ConfigError("teachtext: no teacher similarity matrix to aggregate")
    dt = reduce(torch.promote_types, [_full(m).dtype for m in mats])
    return torch.stack([m.to(dt) for m in mats]).mean(dim=0)


def standardized(s: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(S - mean(S)) / std(S) over every given entry of one batch matrix (population std)."""
    return (s - s.mean()) / (s.std(unbiased=False) + eps)


def sim_distance(student: torch.Tensor, target: torch.Tensor, distance: str = "huber", delta: float = 1.0) -> torch.Tensor:
    """l_d between a student matrix and a (detached) target of the same shape, averaged over the entries: Huber
    with threshold ``delta`` (torch smooth-L1), squared error or absolute error."""
    x = _full(student)
    y = target.detach().to(x.dtype)
    if distance == "huber":
        return F.smooth_l1_loss(x, y, beta=delta)
    if distance == "mse":
        return F.mse_loss(x, y)
    if distance == "l1":
        return F.l1_loss(x, y)
    raise ConfigError(f"teachtext distance must be one of {', '.join(DISTANCES)}, got {distance!r}")


@LOSSES.register("teachtext", help="TeachText (Croitoru et al. 2021): a retrieval loss + distillation of the mean of "
                 "several frozen teachers' similarity matrices; needs --teachers SPEC[,SPEC...]")
class TeachTextLoss(TrainLoss):
    needs = frozenset({"teachers"})

    @dataclass(frozen=True)
    class Config:
        retrieval: str = "infonce"  # the student's own retrieval loss L_r (a registered loss, not teachtext)
        retrieval_config: dict = field(default_factory=dict)  # its Config fields
        lambda_cross: float = 1.0  # lambda: weight of L_d (caption-item matrices of cross-modal teachers)
        lambda_text: float = 1.0  # weight of L_t (caption-caption matrices; text-only teachers by default)
        text_from: str = "text-only"  # whose caption-caption matrices enter L_t: text-only | all teachers
        distance: str = "huber"  # l_d: huber (the paper's code) | mse | l1
        delta: float = 1.0  # Huber threshold (torch SmoothL1Loss beta)
        standardize: bool = False  # z-score each matrix over the batch before comparing (ours; off = the paper)

    def __init__(self, config, model, info):
        super().__init__(config, model, info)
        c = config
        if c.retrieval == "teachtext":
            raise ConfigError("teachtext: retrieval must be another loss (e.g. infonce, vsepp), not teachtext")
        if c.distance not in DISTANCES:
            raise ConfigError(f"teachtext: distance must be one of {', '.join(DISTANCES)}, got {c.distance!r}")
        if c.text_from not in TEXT_FROM:
            raise ConfigError(f"teachtext: text_from must be one of {', '.join(TEXT_FROM)}, got {c.text_from!r}")
        if c.lambda_cross < 0 or c.lambda_text < 0 or c.delta <= 0:
            raise ConfigError("teachtext: lambda_cross and lambda_text must be >= 0 and delta > 0")
        from . import create_loss

        self.retrieval = create_loss(c.retrieval, dict(c.retrieval_config), model, info)
        self.needs = frozenset({"teachers"}) | self.retrieval.needs  # instance-level: what the inner loss needs too

    def _prep(self, s: torch.Tensor) -> torch.Tensor:
        return standardized(_full(s)) if self.config.standardize else _full(s)

    def forward(self, b: Batch, model):
        c = self.config
        if not b.teachers:
            raise ConfigError("teachtext: the batch carries no teacher embeddings; give --teachers SPEC[,SPEC...]")
        loss, logs = self.retrieval(b, model)
        logs = {**logs, "l_retrieval": float(loss.detach())}
        cross = [self._prep(t.txt @ t.img.T) for t in b.teachers if t.img is not None]
        if cross and c.lambda_cross > 0:
            ld = sim_distance(self._prep(b.txt @ b.img.T), aggregate(cross), c.distance, c.delta)
            loss = loss + c.lambda_cross * ld
            logs["l_distil"] = float(ld.detach())
        off = ~torch.eye(b.txt.shape[0], dtype=torch.bool, device=b.txt.device)  # the diagonal (1 for all) is left out
        text = [self._prep((t.txt @ t.txt.T)[off]) for t in b.teachers if t.img is None or c.text_from == "all"]
        if text and c.lambda_text > 0:
            lt = sim_distance(self._prep((b.txt @ b.txt.T)[off]), aggregate(text), c.distance, c.delta)
            loss = loss + c.lambda_text * lt
            logs["l_text"] = float(lt.detach())
        return loss, logs

    def on_epoch_start(self, ctx: EpochContext) -> dict[str, float]:
        return self.retrieval.on_epoch_start(ctx)

    @torch.no_grad()
    def after_step(self, model) -> None:
        self.retrieval.after_step(model)

    def export_heads(self):
        return self.retrieval.export_heads()  # e.g. retrieval "pcme": its uncertainty heads are saved with the model
