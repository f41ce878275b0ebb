"""``cots``: instance-level cross-modal momentum contrast with queues (and optionally COTS' task-level term).

Lu et al., "COTS: Collaborative Two-Stream Vision-Language Pre-Training Model for Cross-Modal Retrieval", CVPR
2022, Section 3.2: momentum copies of both encoders (``theta_k = m * theta_k + (1 - m) * theta_q``) produce keys;
a queue per modality keeps the last ``queue_size`` keys; the instance-level loss is InfoNCE of each image query
against its caption's momentum key and the caption queue, and of each caption query against the image key and the
image queue (Eq. 1-3), temperature ``tau``. With ``task_weight > 0``, the task-level interaction (Section 3.2:
the KL divergence between the in-batch image->text and text->image retrieval distributions) is added.

Left out: token-level interaction (masked language / vision modelling: needs token outputs and decoders), the
adaptive momentum filter for noisy pairs. Deviation: queue entries of the query's own image (its other captions)
are masked out as negatives (small data sets would otherwise contain many false negatives).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...registries import LOSSES
from .base import Batch, LossInfo, TrainLoss, ema_update, frozen_copy


def queue_infonce(q: torch.Tensor, k_pos: torch.Tensor, queue: torch.Tensor, tau: float,
                  neg_mask: torch.Tensor | None = None, neg_weight: torch.Tensor | None = None) -> torch.Tensor:
    """MoCo-style InfoNCE: (B, d) queries, (B, d) positive keys, (K, d) queue -> mean over the batch of
    ``-log(exp(q.k+/tau) / (exp(q.k+/tau) + sum_j w_j exp(q.n_j/tau)))``. ``neg_mask`` (B, K) True drops a negative;
    ``neg_weight`` (B, K) multiplies its exp term (1 everywhere when None: plain MoCo)."""
    pos = (q * k_pos).sum(dim=1, keepdim=True) / tau  # (B, 1)
    neg = q @ queue.T / tau  # (B, K)
    if neg_weight is not None:
        neg = neg + torch.log(neg_weight.clamp(min=1e-12))
    if neg_mask is not None:
        neg = neg.masked_fill(neg_mask, float("-inf"))
    logits = torch.cat([pos, neg], dim=1)
    return -(pos.squeeze(1) - logits.logsumexp(dim=1)).mean()


def task_level_kl(img: torch.Tensor, txt: torch.Tensor, tau: float) -> torch.Tensor:
    """KL(p_i2t || p_t2i): row i of softmax(S / tau) (image i over captions) against column i (caption i over
    images), averaged over i."""
    s = img @ txt.T / tau
    log_i2t, log_t2i = s.log_softmax(dim=1), s.T.log_softmax(dim=1)
    return F.kl_div(log_t2i, log_i2t, log_target=True, reduction="batchmean")


@LOSSES.register("cots", help="COTS instance-level momentum contrast: momentum encoders + a key queue per modality "
                 "(Lu et al. 2022)")
class COTSLoss(TrainLoss):
    @dataclass(frozen=True)
    class Config:
        queue_size: int = 1024  # keys kept per modality
        momentum: float = 0.99  # m of the momentum encoders
        tau: float = 0.07  # temperature
        task_weight: float = 0.0  # weight of the task-level KL term (0: instance level only)

    def __init__(self, config, model, info: LossInfo):
        super().__init__(config, model, info)
        self.key_model = frozen_copy(model)
        k = config.queue_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(info.seed + 31)
            self.register_buffer("img_queue", F.normalize(torch.randn(k, info.dim), dim=1))
            self.register_buffer("txt_queue", F.normalize(torch.randn(k, info.dim), dim=1))
        self.register_buffer("queue_item", torch.full((k,), -1, dtype=torch.long))  # image ids of the keys (-1: init)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending = None

    def negative_weights(self, q: torch.Tensor, queue: torch.Tensor) -> torch.Tensor | None:
        return None  # plain MoCo; CODER overrides

    def forward(self, b: Batch, model):
        c = self.config
        with torch.no_grad():
            k_img = self.key_model.encode_image(b.img_in)
            k_txt = self.key_model.encode_text(b.txt_in)
        item = b.item if b.item is not None else b.index
        mask = item.view(-1, 1) == self.queue_item.view(1, -1)  # the query's own image in the queue: not a negative
        img_q, txt_q = self.img_queue.clone().detach(), self.txt_queue.clone().detach()
        l_i2t = queue_infonce(b.img, k_txt, txt_q, c.tau, mask, self.negative_weights(b.img, txt_q))
        l_t2i = queue_infonce(b.txt, k_img, img_q, c.tau, mask, self.negative_weights(b.txt, img_q))
        loss = (l_i2t + l_t2i) / 2
        logs = {}
        if c.task_weight > 0:
            kl = task_level_kl(b.img, b.txt, c.tau)
            loss = loss + c.task_weight * kl
            logs["task_kl"] = float(kl.detach())
        self._pending = (k_img.detach(), k_txt.detach(), item.detach())
        return loss, logs

    @torch.no_grad()
    def after_step(self, model) -> None:
        ema_update(self.key_model, model, self.config.momentum)
        if self._pending is None:
            return
        k_img, k_txt, item = self._pending
        self._pending = None
        n, size = k_img.shape[0], self.config.queue_size
        pos = (int(self.queue_ptr) + torch.arange(n, device=k_img.device)) % size
        self.img_queue[pos] = k_img.to(self.img_queue.dtype)
        self.txt_queue[pos] = k_txt.to(self.txt_queue.dtype)
        self.queue_item[pos] = item
        self.queue_ptr.fill_((int(self.queue_ptr) + n) % size)
