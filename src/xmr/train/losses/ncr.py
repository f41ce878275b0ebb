"""``ncr``: Noisy Correspondence Rectifier — co-divide and co-rectify with two networks.

Huang et al., "Learning with Noisy Correspondence for Cross-modal Matching", NeurIPS 2021, Section 3:

* co-divide (Eq. 3-4): each network's per-pair loss over the whole training set, min-max normalised, is fitted with
  a two-component GMM (sklearn ``GaussianMixture``, the authors' settings: ``max_iter=10, tol=1e-2,
  reg_covar=5e-4``); ``w_i`` = posterior of the low-mean component; pairs with ``w_i > threshold`` are clean. Each
  network is trained on the split made by its *peer* (the data division is exchanged, as in co-teaching);
* co-rectify (Eq. 5-6): rectified correspondence ``y_i = w_i * 1 + (1 - w_i) * P_i`` for clean pairs (``P_i`` the
  network's own prediction) and ``y_i = (P_i^A + P_i^B) / 2`` for noisy pairs, used from half of the run on (the
  authors' code: ``loss_u = 0`` for ``epoch < num_epochs // 2``);
* robust loss (Eq. 7-8): the VSE++ hardest-negative hinge with a soft margin ``a_i = a * (m^{y_i} - 1) / (m - 1)``.

A warm-up of ``warmup_epochs`` trains both networks with the plain hinge (margin ``a``): by default the sum over
negatives (VSE++ Eq. 4; ``warmup_hardest=True``: the hardest one), our choice — from randomly initialised heads the
hardest-negative hinge alone collapses (see :mod:`.vsepp`).

Deviations: the per-pair loss for co-divide is the hinge (sum over negatives) against other pairs in chunks of
``chunk`` pairs of a seeded permutation, pairs of the same image masked; ``P_i`` (the paper's "predicted
correspondence") is the in-batch softmax probability of the positive at temperature ``pred_temperature``, averaged
over both directions; clean and noisy pairs share one batch (the paper draws them from two loaders); the peer is a
second copy of the trained model initialised with another seed; the saved model is network A alone (the paper
averages the two networks' similarities at test time).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...registries import LOSSES
from .base import Batch, EpochContext, LossInfo, TrainLoss
from .vsepp import hinge_terms


def soft_margin(y: torch.Tensor, margin: float, m: float) -> torch.Tensor:
    """Eq. 8: ``a * (m**y - 1) / (m - 1)`` — ``a`` at y = 1, 0 at y = 0."""
    return margin * (torch.pow(torch.as_tensor(m, dtype=y.dtype), y) - 1) / (m - 1)


def predicted_correspondence(img: torch.Tensor, txt: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, d), (B, d) -> (B,) in [0, 1]: the positive's softmax probability among the batch, both directions
    averaged (no grad)."""
    s = img @ txt.T / temperature
    return ((s.softmax(dim=1).diag() + s.softmax(dim=0).diag()) / 2).detach()


def gmm_clean_probability(losses: np.ndarray, seed: int) -> np.ndarray:
    """Eq. 3-4: min-max normalise per-pair losses, fit a 2-component GMM, return each pair's posterior of the
    component with the smaller mean."""
    from sklearn.mixture import GaussianMixture

    x = np.asarray(losses, np.float64)
    x = (x - x.min()) / max(x.max() - x.min(), 1e-12)
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed)
    gmm.fit(x.reshape(-1, 1))
    return gmm.predict_proba(x.reshape(-1, 1))[:, int(gmm.means_.argmin())]


@LOSSES.register("ncr", help="NCR co-divide (GMM on per-pair loss) + co-rectify soft margins, two networks "
                 "(Huang et al. 2021)")
class NCRLoss(TrainLoss):
    @dataclass(frozen=True)
    class Config:
        margin: float = 0.2  # a: the hinge margin
        soft_base: float = 10.0  # m in Eq. 8 (> 1)
        warmup_epochs: int = 1  # epochs of plain hinge before the first co-divide
        threshold: float = 0.5  # w_i above it: clean
        pred_temperature: float = 0.05  # temperature of the predicted correspondence P_i
        chunk: int = 128  # negatives per pair when computing per-pair losses for co-divide
        warmup_hardest: bool = False  # warm up with the max of hinges (True) or their sum (False, default)

    def __init__(self, config, model, info: LossInfo):
        super().__init__(config, model, info)
        if config.soft_base <= 1:
            from ...errors import ConfigError

            raise ConfigError(f"ncr: soft_base must be > 1, got {config.soft_base}")
        self.peer = model.fresh(seed=info.seed + 7919)  # network B, trained alongside
        n = info.num_pairs
        self.register_buffer("prob_a", torch.ones(n))  # w_i from network A's losses (divides B's data)
        self.register_buffer("prob_b", torch.ones(n))  # w_i from network B's losses (divides A's data)
        self.register_buffer("divided", torch.tensor(False))

    @torch.no_grad()
    def _pair_losses(self, net, ctx: EpochContext) -> np.ndarray:
        img, txt = ctx.embed_all(net)
        perm = torch.from_numpy(np.random.default_rng([ctx.seed, ctx.epoch, 17]).permutation(ctx.num_pairs))
        out = torch.empty(ctx.num_pairs)
        for s in range(0, ctx.num_pairs, self.config.chunk):
            idx = perm[s: s + self.config.chunk]
            sims = img[idx] @ txt[idx].T
            same = ctx.pair_item[idx].view(-1, 1) == ctx.pair_item[idx].view(1, -1)
            sims = sims.masked_fill(same & ~torch.eye(len(idx), dtype=torch.bool), -1e4)  # not negatives
            out[idx] = hinge_terms(sims, self.config.margin, hardest=False).float().cpu()
        return out.numpy()

    def on_epoch_start(self, ctx: EpochContext) -> dict[str, float]:
        self._epochs = ctx.epochs
        if ctx.epoch < self.config.warmup_epochs:
            return {}
        la, lb = self._pair_losses(ctx.model, ctx), self._pair_losses(self.peer, ctx)
        pa = gmm_clean_probability(la, ctx.seed + ctx.epoch)
        pb = gmm_clean_probability(lb, ctx.seed + ctx.epoch + 1)
        self.prob_a.copy_(torch.from_numpy(pa).float())
        self.prob_b.copy_(torch.from_numpy(pb).float())
        self.divided.fill_(True)
        logs = {"clean_share": float((self.prob_b > self.config.threshold).float().mean())}
        if ctx.noisy_truth is not None and bool(ctx.noisy_truth.any()):
            noisy_pred = (self.prob_b <= self.config.threshold).cpu()
            truth = ctx.noisy_truth.cpu()
            tp = float((noisy_pred & truth).sum())
            logs["noisy_precision"] = tp / max(float(noisy_pred.sum()), 1.0)
            logs["noisy_recall"] = tp / float(truth.sum())
        return logs

    def _clean(self, prob: torch.Tensor) -> torch.Tensor:
        t = self.config.threshold
        if bool((prob > t).all()):  # the authors' rule: no pair estimated noisy -> the 1 % least clean are
            t = float(prob.sort().values[len(prob) // 100])
        return prob > t

    def _branch(self, img, txt, own_pred, peer_pred, prob, late: bool) -> torch.Tensor:
        c = self.config
        clean = self._clean(prob)
        y = torch.where(clean, prob + (1 - prob) * own_pred, (own_pred + peer_pred) / 2)
        weight = torch.where(clean, torch.ones_like(y), torch.full_like(y, 1.0 if late else 0.0))
        per = hinge_terms(img @ txt.T, soft_margin(y.to(img.dtype), c.margin, c.soft_base), hardest=True)
        return (per * weight).sum() / weight.sum().clamp(min=1.0)

    def forward(self, b: Batch, model):
        c = self.config
        pi, pt = self.peer.encode_image(b.img_in), self.peer.encode_text(b.txt_in)
        if b.epoch < c.warmup_epochs or not bool(self.divided):
            h = c.warmup_hardest
            loss = hinge_terms(b.img @ b.txt.T, c.margin, h).mean() + hinge_terms(pi @ pt.T, c.margin, h).mean()
            return loss, {}
        pred_a = predicted_correspondence(b.img, b.txt, c.pred_temperature)
        pred_b = predicted_correspondence(pi, pt, c.pred_temperature)
        idx = b.index.to(self.prob_a.device)
        late = b.epoch >= getattr(self, "_epochs", 2) // 2
        loss_a = self._branch(b.img, b.txt, pred_a, pred_b, self.prob_b[idx].to(b.img.dtype), late)  # A on B's split
        loss_b = self._branch(pi, pt, pred_b, pred_a, self.prob_a[idx].to(b.img.dtype), late)  # B on A's split
        return loss_a + loss_b, {}
