"""``lean``: a few-frame student head distilled from a many-frame teacher that reads associated captions.

The method is LINAS (Fang, Wang, Zhuo, Han, Huang: "Learning Linguistic Association towards Efficient Text-Video
Retrieval", ECCV 2022; called LEAN in xmr's issues). Its idea: a caption misses much of what a video shows, and
other captions of the same video cover some of it. A **teacher** reads the query caption *plus* a support set of
captions of the same video and aggregates them (the "linguistic association"); those captions do not exist at
search time, so a **student** that reads one caption is trained to reproduce the teacher's embeddings and
similarities (knowledge distillation). In the authors' code the student's video encoder sees the same frames as
the teacher's; xmr adds efficiency in frames (a deviation, as issue 16 asks): the teacher looks at many frames
(``teacher_frames``), the student at few (``LeanConfig.num_frames``), so only those few need to be decoded and
encoded per video.

What is implemented, named as in the paper's released code (``silenceFS/LINAS``, ``model.py``: the paper's text
was not available to us, so equation numbers are not cited):

* linguistic association (:class:`LinguisticAssociation`; the teacher's ``Text_multilevel_encoding`` with a
  support set): caption feature ``c``, support features ``s_1..s_S`` (the video's captions), attention weights
  ``w_j = softmax_j(k(s_j) . q(c))`` with linear ``k``, ``q``; teacher text feature ``c + sum_j w_j s_j``;
* teacher: that text side and a many-frame video head (``seqtransf``), trained with the retrieval loss;
* student (:class:`LeanHead`, registered as ``lean``): a single caption and ``num_frames`` frames. Loss (the code's
  ``train_emb`` for ``student_model=text+video``, ``distill_with_triplet``, ``distill_with_similarity``,
  ``similarity_type=diag``)::

      L = alpha * (||t_S - t_T||^2 + video_alpha * ||v_S - v_T||^2) + L_ret(S) + beta * sum_i huber(S_T[i,i] - S_S[i,i])

  with ``t`` / ``v`` the L2-normalised text / video embeddings of student ``S`` and (frozen) teacher ``T``, and
  ``S_.[i,i]`` the similarity of the i-th caption and its own video;
* Adaptive Distillation (``similarity="adapt"``; the code's ``similarity_type=adapt``, ``train_mask``): the
  similarity term covers the whole batch matrix, ``sum_ij W[i,j] huber(S_T[i,j] - S_S[i,j])``, with
  ``W = softmax_i(a I + b (1 - I))`` (per column) and two learned scalars ``a``, ``b`` (init 1), updated each step
  by their own Adam (10x the learning rate) to minimise ``sum_ij W[i,j] huber(...) / |S_T[i,j]|`` on detached
  similarities; the student's loss uses ``W`` detached. ``diag`` is the limit ``W = I``.

Deviations: the retrieval loss is xmr's symmetric InfoNCE (the code: max-violation triplet loss), for teacher and
student alike; losses are means over the batch (the code sums: ``cost_style=sum``), so the default weights differ
(``alpha = 1``; the code's 0.2 goes with sums); the support set is up to ``support_size`` captions of the video
(the query's own included, as in the code), sampled per step (the code: all 20 MSR-VTT captions); the encoders are
xmr's (a frozen image tower's frame features + a temporal head; the code: Dual Encoding on ResNet features); the
paper's *Adaptive Distillation* is implemented as its code intends: the released code builds its mask tensor from
``a``, ``b`` once at start-up, so (as we read it) their updates do not change the weights; here ``W`` is rebuilt
from ``a``, ``b`` every step. The default is ``diag``, the variant the authors' training script uses. Frames: the
teacher's ``teacher_frames`` and the student's ``num_frames`` are uniform centres of equal parts of the clip
(``FramePlan.uniform``); the student's frames are a subset of the teacher's when ``teacher_frames`` is a multiple
of ``num_frames``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from . import VIDEO_HEADS
from .seqtransf import SeqTransfConfig, SeqTransfHead

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeanConfig(SeqTransfConfig):
    num_frames: int = 4  # frames the student looks at (more frames given are uniformly subsampled to this)


@VIDEO_HEADS.register("lean", help="LINAS/LEAN student: few frames, distilled from a many-frame teacher that reads "
                                   "associated captions")
class LeanHead(SeqTransfHead):
    """The student: a ``seqtransf`` temporal head that only ever looks at ``num_frames`` frames (uniform centres
    of the frames it is given). Train with :func:`distill_student`."""

    name = "lean"
    Config = LeanConfig

    @property
    def index_frames(self) -> int:
        """The student's ``num_frames``: ``xmr index`` decodes only these (``FramePlan.uniform(num_frames)`` over
        the clip), never the teacher's many frames nor the index's fps grid."""
        return int(self.config.num_frames)

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor):
            frames = torch.as_tensor(frames, dtype=torch.float32)
        if frames.dim() == 3:  # (B, T, D): keep the student's few frames; super() checks shapes and widths
            frames = frames[:, uniform_indices(frames.shape[1], self.config.num_frames)]
        return super().embed_video(frames)


def uniform_indices(t: int, n: int) -> torch.Tensor:
    """Indices of ``n`` uniform centres among ``t`` frames (all ``t`` when ``t <= n``): the frames
    ``FramePlan.uniform(n)`` decodes when the ``t`` frames are themselves uniform centres (``t`` a multiple of
    ``n``)."""
    if t <= n:
        return torch.arange(t)
    return ((torch.arange(n, dtype=torch.float64) + 0.5) * t / n).floor().long().clamp(max=t - 1)


class LinguisticAssociation(nn.Module):
    """Caption feature (B, D) + support features (B, S, D) with mask (B, S) -> (B, D): ``c + sum_j w_j s_j``,
    ``w = softmax_j(k(s_j) . q(c))`` over the unmasked support captions."""

    def __init__(self, dim: int, hidden: int | None = None, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.k = nn.Linear(dim, hidden or dim)
            self.q = nn.Linear(dim, hidden or dim)

    def forward(self, caption: torch.Tensor, support: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("bsh,bh->bs", self.k(support), self.q(caption))  # (B, S)
        w = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
        return caption + torch.einsum("bs,bsd->bd", w, support)


@dataclass(frozen=True)
class LeanTrainConfig:
    """How the teacher and the student are trained (both on frozen frame features)."""

    teacher_frames: int = 16  # frames the teacher looks at
    student_frames: int = 4  # frames the student looks at (LeanConfig.num_frames)
    support_size: int = 4  # captions of the video the teacher reads, the query's own included (sampled per step)
    alpha: float = 1.0  # weight of the embedding distillation ||t_S - t_T||^2 + video_alpha ||v_S - v_T||^2
    video_alpha: float = 1.0  # weight of the video term inside it
    beta: float = 1.0  # weight of the similarity distillation (huber on the positive pairs' similarities)
    similarity: str = "diag"  # "diag": positive pairs only; "adapt": Adaptive Distillation over the whole matrix
    epochs: int = 60
    lr: float = 2e-3
    batch_size: int = 32
    weight_decay: float = 0.01
    seed: int = 0  # head / association initialisation and batch order

    def __post_init__(self):
        for name in ("teacher_frames", "student_frames", "support_size", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"LeanTrainConfig: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("alpha", "video_alpha", "beta", "lr", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"LeanTrainConfig: {name} must be >= 0, got {getattr(self, name)}")
        if self.similarity not in ("diag", "adapt"):
            raise ConfigError(f"LeanTrainConfig: similarity must be 'diag' or 'adapt', got {self.similarity!r}")


class AdaptiveWeights(nn.Module):
    """Adaptive Distillation's weights over a (B, B) similarity matrix: ``softmax`` over each column of
    ``a I + b (1 - I)``, with learned scalars ``a`` (positive pairs) and ``b`` (the rest), both initialised to 1."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(1.0))
        self.b = nn.Parameter(torch.tensor(1.0))

    def forward(self, n: int) -> torch.Tensor:
        eye = torch.eye(n)
        return torch.softmax(self.a * eye + self.b * (1 - eye), dim=0)


class Teacher(nn.Module):
    """Many-frame video head + text tower + linguistic association over the video's captions."""

    def __init__(self, head: SeqTransfHead, text_tower: nn.Module, association: LinguisticAssociation,
                 frames: int):
        super().__init__()
        self.head, self.text_tower, self.association, self.frames = head, text_tower, association, frames

    def text(self, text_inputs, idx: np.ndarray, support: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        """(B,) caption indices, (B, S) support indices with mask -> (B, D) associated text features."""
        c = self.text_tower(text_inputs[torch.as_tensor(idx)])
        s = self.text_tower(text_inputs[torch.as_tensor(support.reshape(-1))]).reshape(*support.shape, -1)
        return self.association(c, s, torch.as_tensor(mask))

    def video(self, frames: torch.Tensor) -> torch.Tensor:
        return self.head.embed_video(frames[:, uniform_indices(frames.shape[1], self.frames)])


# ---- training --------------------------------------------------------------------------------------------------


def _captions_by_video(pairs, num_texts: int, num_videos: int) -> list[np.ndarray]:
    from .train import _group_pairs

    return _group_pairs(pairs, num_texts, num_videos)


def support_sets(by_video: Sequence[np.ndarray], videos: np.ndarray, size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(B, S) caption indices of each video's support set (up to ``size`` of its captions, sampled without
    replacement) and the (B, S) mask of real entries; S = the largest set in the batch."""
    sets = [by_video[v] if len(by_video[v]) <= size else rng.choice(by_video[v], size, replace=False) for v in videos]
    s = max(len(x) for x in sets)
    idx = np.zeros((len(sets), s), dtype=np.int64)
    mask = np.zeros((len(sets), s), dtype=bool)
    for i, x in enumerate(sets):
        idx[i, : len(x)], mask[i, : len(x)] = x, True
    return idx, mask


def _info_nce(sims: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = sims * scale.exp().clamp(max=100.0)
    target = torch.arange(len(sims))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def _batches(by_video, cfg: LeanTrainConfig, rng):
    videos = np.asarray([v for v, ts in enumerate(by_video) if len(ts)])
    if len(videos) < 2:
        raise ConfigError("LEAN training needs at least 2 videos with captions (contrastive loss)")
    for _ in range(cfg.epochs):
        order = rng.permutation(videos)
        for s in range(0, len(order), cfg.batch_size):
            vb = order[s: s + cfg.batch_size]
            if len(vb) >= 2:
                yield vb, np.asarray([rng.choice(by_video[v]) for v in vb])


def train_teacher(frame_feats: torch.Tensor, text_inputs, pairs, text_tower: nn.Module | None = None,
                  cfg: LeanTrainConfig | None = None, head_cfg: dict | None = None) -> Teacher:
    """Train the teacher: ``seqtransf`` over ``cfg.teacher_frames`` frames, text = ``text_tower`` (identity when
    None: frozen text embeddings) + :class:`LinguisticAssociation` over the video's captions; symmetric InfoNCE.

    ``frame_feats`` (N_v, T, D) frozen frame features (T >= the frames used); ``text_inputs`` (N_t, ...) the text
    tower's inputs; ``pairs`` (text index, video index) positives — a video's captions are its support set."""
    cfg = cfg or LeanTrainConfig()
    frame_feats = torch.as_tensor(frame_feats, dtype=torch.float32)
    by_video = _captions_by_video(pairs, len(text_inputs), len(frame_feats))
    dim = frame_feats.shape[-1]
    head = SeqTransfHead(SeqTransfConfig.coerce({"dim": dim, "max_frames": max(cfg.teacher_frames, 1),
                                                 "num_frames": cfg.teacher_frames, **(head_cfg or {}),
                                                 "seed": cfg.seed}))
    teacher = Teacher(head, text_tower or nn.Identity(), LinguisticAssociation(dim, seed=cfg.seed),
                      cfg.teacher_frames)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(teacher.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    teacher.train()
    t0 = time.perf_counter()
    for vb, tb in _batches(by_video, cfg, rng):
        sup, mask = support_sets(by_video, vb, cfg.support_size, rng)
        text = F.normalize(teacher.text(text_inputs, tb, sup, mask), dim=-1)
        sims = text @ teacher.video(frame_feats[torch.as_tensor(vb)]).T
        loss = _info_nce(sims, head.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    log.info("LEAN teacher (%d frames): %d epochs in %.1f s", cfg.teacher_frames, cfg.epochs, time.perf_counter() - t0)
    return teacher.eval()


def distill_student(frame_feats: torch.Tensor, text_inputs, pairs, teacher: Teacher,
                    text_tower: nn.Module | None = None, cfg: LeanTrainConfig | None = None,
                    head_cfg: dict | None = None,
                    on_step: Callable[[dict], None] | None = None) -> LeanHead:
    """Train the student (:class:`LeanHead` over ``cfg.student_frames`` frames, and ``text_tower`` if given: the
    student's own, reading one caption) against the frozen ``teacher`` with the loss in the module docstring.
    ``on_step`` receives each step's loss terms (floats). Returns the head in eval mode (the tower too)."""
    cfg = cfg or LeanTrainConfig()
    frame_feats = torch.as_tensor(frame_feats, dtype=torch.float32)
    by_video = _captions_by_video(pairs, len(text_inputs), len(frame_feats))
    dim = frame_feats.shape[-1]
    head = LeanHead(LeanConfig.coerce({"dim": dim, "max_frames": max(cfg.student_frames, 1),
                                       "num_frames": cfg.student_frames, **(head_cfg or {}), "seed": cfg.seed}))
    tower = text_tower or nn.Identity()
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    rng = np.random.default_rng(cfg.seed + 1)
    opt = torch.optim.AdamW(list(head.parameters()) + list(tower.parameters()), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    adapt = AdaptiveWeights() if cfg.similarity == "adapt" else None
    opt_w = torch.optim.Adam(adapt.parameters(), lr=10 * cfg.lr) if adapt is not None else None
    head.train()
    tower.train()
    t0 = time.perf_counter()
    for vb, tb in _batches(by_video, cfg, rng):
        frames = frame_feats[torch.as_tensor(vb)]
        with torch.no_grad():
            sup, mask = support_sets(by_video, vb, cfg.support_size, rng)
            t_t = F.normalize(teacher.text(text_inputs, tb, sup, mask), dim=-1)
            v_t = teacher.video(frames)
            s_t = t_t @ v_t.T  # (B, B) teacher similarities; the diagonal pairs each caption with its own video
        t_s = F.normalize(tower(text_inputs[torch.as_tensor(tb)]), dim=-1)
        v_s = head.embed_video(frames)
        sims = t_s @ v_s.T
        ret = _info_nce(sims, head.logit_scale)
        emb = ((t_s - t_t) ** 2).sum(-1).mean() + cfg.video_alpha * ((v_s - v_t) ** 2).sum(-1).mean()
        if adapt is None:
            sim = F.smooth_l1_loss(sims.diagonal(), s_t.diagonal())
        else:
            err = F.smooth_l1_loss(sims, s_t, reduction="none")  # (B, B)
            w_loss = (adapt(len(vb)) * err.detach() / (s_t.abs() + 1e-6)).sum()  # the weights' own objective
            opt_w.zero_grad(set_to_none=True)
            w_loss.backward()
            opt_w.step()
            with torch.no_grad():
                w = adapt(len(vb))
            sim = (w * err).sum() / len(vb)  # = mean_i err[i, i] when w = I
        loss = cfg.alpha * emb + ret + cfg.beta * sim
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            info = {"loss": loss.item(), "retrieval": ret.item(), "embedding": emb.item(), "similarity": sim.item()}
            if adapt is not None:
                info["positive_weight"] = float(w.diagonal().mean())  # W's share on the positive pairs (1/B at start)
            on_step(info)
    log.info("LEAN student (%d frames): %d epochs in %.1f s", cfg.student_frames, cfg.epochs, time.perf_counter() - t0)
    head.eval()
    tower.eval()
    return head


def train_lean(frame_feats: torch.Tensor, text_emb: torch.Tensor, pairs, cfg: LeanTrainConfig | None = None,
               head_cfg: dict | None = None) -> LeanHead:
    """Teacher then student on frozen features: what ``xmr train-head --head lean`` runs. ``frame_feats`` (N_v, T, D)
    with ``T >= cfg.teacher_frames`` uniform frames per video, ``text_emb`` (N_t, D) the frozen encoder's caption
    embeddings (the text side stays the encoder's: identity towers), ``pairs`` (text, video) positives; ``head_cfg``
    the ``seqtransf`` options shared by teacher and student (layers, heads...). Returns the student in eval mode,
    its ``provenance`` holding the distillation settings."""
    from dataclasses import asdict

    cfg = cfg or LeanTrainConfig()
    frame_feats = torch.as_tensor(frame_feats, dtype=torch.float32)
    if frame_feats.dim() != 3 or frame_feats.shape[1] < cfg.teacher_frames:
        raise ConfigError(f"LEAN: frame features must be (videos, >= {cfg.teacher_frames} frames, dim), got shape "
                          f"{tuple(frame_feats.shape)}")
    for key in ("dim", "num_frames", "max_frames", "seed"):
        if key in (head_cfg or {}):
            raise ConfigError(f"LEAN: head option {key!r} is set by the trainer (frames: --frames for the student, "
                              "--teacher-frames for the teacher; dim: the encoder's)")
    text_emb = torch.as_tensor(text_emb, dtype=torch.float32)
    teacher = train_teacher(frame_feats, text_emb, pairs, None, cfg, head_cfg)
    student = distill_student(frame_feats, text_emb, pairs, teacher, None, cfg, head_cfg)
    student.provenance = {"distillation": {"method": "LINAS/LEAN (xmr.heads.lean)", **asdict(cfg)}}
    return student


__all__ = ["AdaptiveWeights", "LeanConfig", "LeanHead", "LeanTrainConfig", "LinguisticAssociation", "Teacher",
           "distill_student", "support_sets", "train_lean", "train_teacher", "uniform_indices"]
