"""``cots``: COTS' cross-modal momentum contrast with queues, plus its task-level, token-level and noise-filter parts.

Lu et al., "COTS: Collaborative Two-Stream Vision-Language Pre-Training Model for Cross-Modal Retrieval", CVPR
2022, Section 3.2: momentum copies of both encoders (``theta_k = m * theta_k + (1 - m) * theta_q``) produce keys;
a queue per modality keeps the last ``queue_size`` keys; the instance-level loss is InfoNCE of each image query
against its caption's momentum key and the caption queue, and of each caption query against the image key and the
image queue (Eq. 1-3), temperature ``tau``. With ``task_weight > 0``, the task-level interaction (Section 3.2:
the KL divergence between the in-batch image->text and text->image retrieval distributions) is added.

With ``mlm_weight`` / ``mvm_weight > 0`` (models with token outputs: ``--mode full --model tiny``), the token-level
interaction: masked language / vision modelling, each stream conditioned on the other modality's global feature
(:mod:`.cots_token`, with its deviations: k-means visual tokens instead of a dVAE's, PAD as the mask token, a causal
text tower).

With ``amf = true``, the adaptive momentum filter (AMF; **the full text was not
reachable here, the rule below is our reading of its summary**: noisy pairs are filtered "adaptively, based on the
dynamic distribution of similarity scores"): the momentum encoders' similarity ``s_b = k_img_b . k_txt_b`` of every
pair is pushed into a score queue (``queue_size`` long); once the queue is full, a pair with
``s_b < mean(queue) - amf_k * std(queue)`` is dropped from every term of this step's loss and its keys are not
enqueued. Before the queue is full nothing is dropped (warm-up).

With ``batch_negatives = true`` (ours, as ALBEF does), the other pairs' momentum keys of the same batch are negatives
too, besides the queue.

Deviation: queue entries of the query's own image (its other captions) are masked out as negatives (small data sets
would otherwise contain many false negatives).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...registries import LOSSES
from .base import Batch, EpochContext, LossInfo, TrainLoss, ema_update, frozen_copy


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


@LOSSES.register("cots", help="COTS: momentum encoders + a key queue per modality; optional task-level KL, token-level "
                 "MLM / MVM (tiny models) and adaptive momentum filter (Lu et al. 2022)")
class COTSLoss(TrainLoss):
    @dataclass(frozen=True)
    class Config:
        queue_size: int = 1024  # keys kept per modality (and similarity scores kept by the AMF)
        momentum: float = 0.99  # m of the momentum encoders
        tau: float = 0.07  # temperature
        task_weight: float = 0.0  # weight of the task-level KL term (0: instance level only)
        mlm_weight: float = 0.0  # token level: masked language modelling given the image (0: off; tiny models)
        mvm_weight: float = 0.0  # token level: masked vision modelling given the caption (0: off; tiny models)
        mlm_ratio: float = 0.15  # share of a caption's bytes masked
        mvm_ratio: float = 0.4  # share of an image's patches masked
        mvm_codes: int = 32  # visual tokens: k-means codes of patch pixels (the paper: a dVAE's vocabulary)
        amf: bool = False  # adaptive momentum filter: drop pairs far below the recent similarity distribution
        amf_k: float = 2.0  # AMF threshold: mean - amf_k * std of the score queue
        batch_negatives: bool = False  # also the batch's other keys as negatives (ALBEF-style; ours, off = MoCo)

        LIMITS = {"queue_size": (1, 1 << 20), "momentum": (0.0, 1.0), "tau": (1e-4, 10.0), "mlm_ratio": (0.0, 1.0),
                  "mvm_ratio": (0.0, 1.0), "mvm_codes": (2, 65536), "mlm_weight": (0.0, 1e3), "mvm_weight": (0.0, 1e3),
                  "task_weight": (0.0, 1e3), "amf_k": (0.0, 100.0)}

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
        self.token = None
        if config.mlm_weight > 0 or config.mvm_weight > 0:
            from .cots_token import TokenLevel

            self.token = TokenLevel(model, info.dim, config.mvm_codes, info.seed)
        if config.amf:
            self.register_buffer("amf_scores", torch.full((k,), float("nan")))
            self.register_buffer("amf_ptr", torch.zeros((), dtype=torch.long))
        self._pending = None
        self._noisy = None  # (P,) bool known corruption (synthetic data): for the AMF's logs only

    def negative_weights(self, q: torch.Tensor, queue: torch.Tensor) -> torch.Tensor | None:
        return None  # plain MoCo; CODER overrides

    def extra_terms(self, b: Batch, k_img: torch.Tensor, k_txt: torch.Tensor, keep: torch.Tensor):
        """Terms a subclass adds on the kept rows (CODER's concept level): -> (loss or None, logs)."""
        return None, {}

    def on_epoch_start(self, ctx: EpochContext) -> dict[str, float]:
        self._noisy = ctx.noisy_truth
        return {}

    def amf_keep(self, scores: torch.Tensor) -> torch.Tensor:
        """(B,) momentum similarities of the batch's pairs -> (B,) bool kept (all True until the score queue is
        full)."""
        q = self.amf_scores
        if bool(torch.isnan(q).any()):
            return torch.ones_like(scores, dtype=torch.bool)
        return scores >= q.mean() - self.config.amf_k * q.std()

    def forward(self, b: Batch, model):
        c = self.config
        with torch.no_grad():
            k_img = self.key_model.encode_image(b.img_in)
            k_txt = self.key_model.encode_text(b.txt_in)
        item = b.item if b.item is not None else b.index
        logs = {}
        keep = torch.ones(item.shape[0], dtype=torch.bool, device=item.device)
        scores = None
        if c.amf:
            scores = (k_img.float() * k_txt.float()).sum(dim=1)
            keep = self.amf_keep(scores)
            logs["amf_dropped"] = float((~keep).float().mean())
            if self._noisy is not None:
                logs["amf_dropped_noisy"] = float(((~keep) & self._noisy[b.index]).float().mean())
        n_keep = int(keep.sum())
        zero = (b.img.sum() + b.txt.sum()) * 0.0
        if n_keep == 0:
            loss = zero
        else:
            mask = (item.view(-1, 1) == self.queue_item.view(1, -1))[keep]  # the query's own image: not a negative
            img_q, txt_q = self.img_queue.clone().detach(), self.txt_queue.clone().detach()
            if c.batch_negatives:  # the kept batch keys first (own image's pairs masked, the positive included)
                kk = item[keep]
                mask = torch.cat([kk.view(-1, 1) == kk.view(1, -1), mask], dim=1)
                img_q, txt_q = torch.cat([k_img[keep], img_q]), torch.cat([k_txt[keep], txt_q])
            qi, qt = b.img[keep], b.txt[keep]
            l_i2t = queue_infonce(qi, k_txt[keep], txt_q, c.tau, mask, self.negative_weights(qi, txt_q))
            l_t2i = queue_infonce(qt, k_img[keep], img_q, c.tau, mask, self.negative_weights(qt, img_q))
            loss = (l_i2t + l_t2i) / 2 + zero
            if c.task_weight > 0 and n_keep >= 2:
                kl = task_level_kl(qi, qt, c.tau)
                loss = loss + c.task_weight * kl
                logs["task_kl"] = float(kl.detach())
        if self.token is not None:
            net = model.net
            if c.mlm_weight > 0:
                mlm = self.token.mlm(net, b.txt_in, b.img, c.mlm_ratio, keep)
                loss = loss + c.mlm_weight * mlm
                logs["mlm"] = float(mlm.detach())
            if c.mvm_weight > 0:
                mvm = self.token.mvm(net, b.img_in, b.txt, c.mvm_ratio, keep)
                loss = loss + c.mvm_weight * mvm
                logs["mvm"] = float(mvm.detach())
        extra, extra_logs = self.extra_terms(b, k_img, k_txt, keep) if n_keep else (None, {})
        if extra is not None:
            loss = loss + extra
        logs.update(extra_logs)
        self._pending = (k_img[keep].detach(), k_txt[keep].detach(), item[keep].detach(),
                         None if scores is None else scores.detach())
        return loss, logs

    @torch.no_grad()
    def after_step(self, model) -> None:
        ema_update(self.key_model, model, self.config.momentum)
        if self._pending is None:
            return
        k_img, k_txt, item, scores = self._pending
        self._pending = None
        size = self.config.queue_size
        if scores is not None:
            pos = (int(self.amf_ptr) + torch.arange(scores.shape[0], device=scores.device)) % size
            self.amf_scores[pos] = scores.to(self.amf_scores.dtype)
            self.amf_ptr.fill_((int(self.amf_ptr) + scores.shape[0]) % size)
        n = k_img.shape[0]
        if n == 0:
            return
        pos = (int(self.queue_ptr) + torch.arange(n, device=k_img.device)) % size
        self.img_queue[pos] = k_img.to(self.img_queue.dtype)
        self.txt_queue[pos] = k_txt.to(self.txt_queue.dtype)
        self.queue_item[pos] = item
        self.queue_ptr.fill_((int(self.queue_ptr) + n) % size)
