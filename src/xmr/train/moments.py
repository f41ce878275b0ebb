"""Training SQuiDNet (:mod:`xmr.localize.squidnet`) on clip features: both branches, the co-occurrence table,
the learnable confounder, per-epoch TVR metrics (:func:`xmr.eval.vcmr`) and the trainer's checkpoints
(``OUT/checkpoints/epoch-NNNN``, ``OUT/config.json`` + ``model.safetensors``, ``metrics.csv``, ``curve.png``; resumable).

One epoch, over the training queries in a seeded random order, batch by batch:

1. **BMR** reads each query's object words and learns the moment of its ground truth against random videos
   (the authors' loss: start / end CE over the clips of all contrasted videos + video CE);
2. **SQuiD**: the co-occurrence table (built once from the training queries' (object, predicate) ids) says per
   query whether the bias helps. With ``debias=True``, a query the bias does not help is contrasted with the
   BMR's top-scoring videos other than its own (its biased moments, refreshed at the start of every epoch);
   every other query with random videos. With ``debias=False`` every query gets random videos (plain NMR);
3. **NMR** learns from the full query with those videos; the **confounder** learns the table's decision (BCE).

Inference (:func:`predict`) applies the confounder's decision: see ``SQuiDNet.corpus_logp``.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..eval.vcmr import vcmr
from ..localize.corpus import submission
from ..localize.squidnet import SQuiDNet, SQuiDNetConfig, cooccurrence_decisions
from .report import plot_curve, write_csv
from .state import check_out, load_state, save_epoch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MomentData:
    """Clip features and queries with their ground-truth moments (clip indices) and parsed words."""

    frames: np.ndarray  # (V, T, D) float32
    queries: np.ndarray  # (Q, D) float32
    object_queries: np.ndarray  # (Q, D) the query's object words alone (what the biased branch reads)
    video: np.ndarray  # (Q,) int ground-truth video
    start: np.ndarray  # (Q,) int first clip of the moment
    end: np.ndarray  # (Q,) int last clip (inclusive)
    objects: np.ndarray  # (Q,) int object word id (co-occurrence table rows)
    predicates: np.ndarray  # (Q,) int predicate id (co-occurrence table columns)
    clip_seconds: float = 1.5

    def __post_init__(self):
        v, t, d = self.frames.shape
        q = len(self.queries)
        if self.queries.shape != (q, d) or self.object_queries.shape != (q, d) or q == 0:
            raise ConfigError(f"MomentData: queries {self.queries.shape} / object_queries "
                              f"{self.object_queries.shape} must be (Q>0, {d})")
        for name in ("video", "start", "end", "objects", "predicates"):
            if getattr(self, name).shape != (q,):
                raise ConfigError(f"MomentData: {name} must hold one value per query ({q})")
        if (self.video < 0).any() or (self.video >= v).any() or (self.start < 0).any() or (self.end >= t).any() \
                or (self.start > self.end).any():
            raise ConfigError("MomentData: ground-truth video / clip indices out of range or start > end")

    @classmethod
    def from_split(cls, split) -> "MomentData":
        """From a :class:`xmr.synth.moments.MomentSplit`."""
        evs = [split.events[e] for e in split.query_events]
        col = lambda f: np.array([f(e) for e in evs], dtype=np.int64)  # noqa: E731
        return cls(split.frames, split.queries, split.object_queries, col(lambda e: e.video),
                   col(lambda e: e.start), col(lambda e: e.end), col(lambda e: e.obj), col(lambda e: e.pred),
                   split.clip_seconds)

    def ground_truth(self) -> list[dict]:
        dur = self.frames.shape[1] * self.clip_seconds
        return [{"vid_name": f"v{int(v)}", "duration": dur, "desc_id": q,
                 "ts": [float(s) * self.clip_seconds, float(e + 1) * self.clip_seconds]}
                for q, (v, s, e) in enumerate(zip(self.video, self.start, self.end))]

    def clip_times(self) -> np.ndarray:
        v, t, _ = self.frames.shape
        st = np.arange(t, dtype=np.float64) * self.clip_seconds
        return np.broadcast_to(np.stack([st, st + self.clip_seconds], axis=1), (v, t, 2))


@dataclass(frozen=True)
class MomentTrainConfig:
    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    debias: bool = True  # SQuiD's selective debiasing in training (biased negatives) and inference
    bias_pool: int = 32  # random videos among which the biased branch picks a harmful-bias query's negatives
    debias_all: bool = False  # ablation: biased negatives for every query (non-selective debiasing)
    seed: int = 0  # data order and negative sampling


def predict(model: SQuiDNet, data: MomentData, *, debias: bool, selective: bool = True, chunk: int = 32) -> dict:
    """A TVR submission (VCMR, SVMR, VR; top 100) of ``model`` on ``data``."""
    sts, eds, vids = [], [], []
    for a in range(0, len(data.queries), chunk):
        st, ed, vid = model.corpus_logp(data.frames, data.queries[a:a + chunk],
                                        object_query=data.object_queries[a:a + chunk], debias=debias,
                                        selective=selective)
        sts.append(st), eds.append(ed), vids.append(vid)
    return submission(np.concatenate(sts), np.concatenate(eds), np.concatenate(vids), data.clip_times(),
                      max_len=model.config.max_moment, gt_videos=data.video)


def evaluate(model: SQuiDNet, data: MomentData, *, debias: bool, selective: bool = True,
             ground_truth: list[dict] | None = None) -> dict:
    """TVR metrics (:func:`xmr.eval.vcmr`) of ``model`` on ``data`` (``ground_truth``: rows naming the videos
    ``v0``, ``v1``, ... in ``data``'s order, e.g. with a ``type``; default :meth:`MomentData.ground_truth`)."""
    gt = ground_truth if ground_truth is not None else data.ground_truth()
    return vcmr(gt, predict(model, data, debias=debias, selective=selective))


def _negatives(rng, n: int, exclude: int, k: int) -> list[int]:
    pool = np.delete(np.arange(n), exclude)
    return rng.choice(pool, size=min(k, len(pool)), replace=False).tolist()


@torch.no_grad()
def _biased_videos(model: SQuiDNet, data: MomentData, queries: np.ndarray, k: int, pool: int, rng) -> np.ndarray:
    """(len(queries), k) the BMR's best videos for each query's object words among ``pool`` random other videos
    (the whole corpus when it is smaller; a pool keeps an epoch's cost independent of the corpus size)."""
    out = np.zeros((len(queries), k), dtype=np.int64)
    for r, q in enumerate(queries):
        cand = np.asarray(_negatives(rng, data.frames.shape[0], int(data.video[q]), pool))
        _, _, vid = model.bmr(torch.as_tensor(data.frames[cand])[None], torch.as_tensor(data.object_queries[q:q + 1]))
        out[r] = cand[torch.topk(vid[0], k).indices.numpy()]
    return out


def _batch(data: MomentData, qs: np.ndarray, negs: list[list[int]]):
    vids = np.array([[data.video[q]] + n for q, n in zip(qs, negs)])
    return (torch.as_tensor(data.frames[vids]), torch.as_tensor(data.start[qs]), torch.as_tensor(data.end[qs]))


def train_squidnet(data: MomentData, model_config: SQuiDNetConfig | dict | None = None,
                   train_config: MomentTrainConfig | None = None, *, out: str | Path | None = None,
                   resume: bool = False, eval_data: MomentData | None = None) -> tuple[SQuiDNet, list[dict]]:
    """Train SQuiDNet on ``data``; returns the model and the per-epoch history (loss, and ``eval_data``'s VCMR /
    SVMR R@1 at IoU 0.5 / 0.7 when given). With ``out``, every epoch is checkpointed there and ``metrics.csv``
    written; ``resume=True`` continues the newest checkpoint (same configs required)."""
    tc = train_config or MomentTrainConfig()
    cfg = SQuiDNetConfig.coerce(model_config, dim=int(data.frames.shape[-1]))
    if data.frames.shape[0] < 2:
        raise ConfigError("train_squidnet needs at least 2 videos (each query is contrasted with other videos)")
    model = SQuiDNet(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    meta = {"train_config": asdict(tc), "model_config": asdict(cfg)}
    history: list[dict] = []
    first = 1
    out_dir = Path(out) if out is not None else None
    rng = np.random.default_rng(tc.seed)
    if out_dir is not None:
        ckpt = check_out(out_dir, resume)
        if ckpt is not None:
            saved, system, optim, rng_state = load_state(ckpt)
            same = {**saved.get("train_config", {}), "epochs": tc.epochs} == meta["train_config"]
            if not same or saved.get("model_config") != meta["model_config"]:
                raise ConfigError(f"resume: {ckpt} was trained with other settings; give the same configs "
                                  "(only epochs may change)")
            model.load_state_dict(system)
            opt.load_state_dict(optim)
            torch.set_rng_state(rng_state)
            history, first = saved["history"], saved["epoch"] + 1
            rng = np.random.default_rng([tc.seed, first])
    _, helps = cooccurrence_decisions(data.objects, data.predicates, cfg.key_predicates)
    harmful = np.arange(len(helps)) if tc.debias_all else np.flatnonzero(~helps)
    helps_t = torch.as_tensor(helps, dtype=torch.float32)
    # class-balanced confounder loss: most training queries are ones the bias helps (that is the bias)
    share = float(helps.mean())
    pos_weight = torch.tensor((1 - share) / share if 0 < share < 1 else 1.0)
    n_videos = data.frames.shape[0]
    for epoch in range(first, tc.epochs + 1):
        biased = {}
        if tc.debias and len(harmful) and cfg.negatives:
            found = _biased_videos(model, data, harmful, min(cfg.negatives, n_videos - 1), tc.bias_pool, rng)
            for q, row in zip(harmful, found):
                biased[int(q)] = row.tolist()
        model.train()
        order = rng.permutation(len(data.queries))
        total, steps = 0.0, 0
        for a in range(0, len(order), tc.batch_size):
            qs = order[a:a + tc.batch_size]
            rand = [_negatives(rng, n_videos, int(data.video[q]), cfg.negatives) for q in qs]
            nmr_negs = [biased.get(int(q), r) for q, r in zip(qs, rand)]
            q_t = torch.as_tensor(data.queries[qs])
            fr, st, ed = _batch(data, qs, nmr_negs)
            loss = SQuiDNet.moment_loss(*model.nmr(fr, q_t), st, ed)
            fr_b, _, _ = _batch(data, qs, rand)
            loss = loss + SQuiDNet.moment_loss(*model.bmr(fr_b, torch.as_tensor(data.object_queries[qs])), st, ed)
            loss = loss + F.binary_cross_entropy_with_logits(model.bias_helps(q_t), helps_t[qs], pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + float(loss.detach()), steps + 1
        row = {"epoch": epoch, "loss": total / max(steps, 1)}
        if eval_data is not None:
            m = evaluate(model, eval_data, debias=tc.debias)
            row.update({f"{task}_{k}": m[task][k] for task in ("VCMR", "SVMR") for k in ("0.5-r1", "0.7-r1")})
        history.append(row)
        log.info("squidnet epoch %d: %s", epoch, row)
        if out_dir is not None:
            training = {"history": history, **meta}
            save_epoch(out_dir, epoch, model, model.state_dict(), opt, {"training": training, **training})
            write_csv(out_dir / "metrics.csv", history)
            plot_curve(out_dir / "curve.png", [{**r, "train_loss": r["loss"]} for r in history],
                       f"SQuiDNet (debias={tc.debias})", keys=("VCMR_0.5-r1", "VCMR_0.7-r1", "SVMR_0.5-r1"))
    model.provenance = {"history": history, **meta}
    return model, history


__all__ = ["MomentData", "MomentTrainConfig", "evaluate", "predict", "train_squidnet"]
