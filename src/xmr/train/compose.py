"""``xmr train-compose``: train a composer (:mod:`xmr.compose`) on (reference image, modification text, target
image) triplets of a composed dataset (:mod:`xmr.data.composed`), on a frozen encoder's cached features.

The frozen encoder runs once over the gallery images and the texts (:mod:`.features`' cache, keyed by content);
each epoch draws a seeded permutation of the train triplets, cut into batches; the loss is the composer's
``objective`` (:func:`composer_loss`); after each epoch the composer is evaluated on the evaluation split with the
dataset's protocol (:mod:`xmr.eval.composed`), saved to ``OUT`` (``config.json`` + ``model.safetensors``: the
folder ``xmr search --composer`` and ``xmr eval --composer`` take) with a checkpoint
(``OUT/checkpoints/epoch-NNNN``: composer, optimiser, RNG, history; :mod:`.state`) that ``resume=True``
(``xmr train-compose --resume``) continues, and ``metrics.csv`` / ``curve.png`` are rewritten. Epoch 0 is the
untrained composer; the training-free baselines (image only, text only, fusion) of the
same evaluation split are recorded in ``config.json``'s ``training.baselines``.

The batch loss is TIRG's batch classification: ``-log softmax_j(s <q_i, k_j>)`` at j = i with the composer's
learnable scale ``s = exp(logit_scale)`` (at most 100). One deviation from the paper's loss, stated: a key of the
batch that the dataset lists as a correct target of query i (another image with the target's attributes or
description) is left out of i's softmax instead of being pushed away as a negative.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import config_from_dict
from ..errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComposeTrainConfig:
    dataset: str  # composed dataset spec without a split, e.g. edits:DIR or fashion200k:DIR
    composer: str = "tirg"  # a registered composer (xmr.registries.COMPOSERS)
    model: str = "concept"  # the frozen encoder whose joint space the composer works in
    split: str = "train"  # training split
    eval_split: str | None = "test"  # evaluated every epoch (None: no evaluation)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0  # composer initialisation, batch order
    hidden: int = 256  # the composition MLPs' hidden width
    composer_config: dict = field(default_factory=dict)  # the composer's other Config fields

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 2 or not self.lr > 0:
            raise ConfigError(f"need epochs >= 1, batch size >= 2 and lr > 0 (got {self.epochs}, {self.batch_size}, "
                              f"{self.lr})")

    @classmethod
    def from_dict(cls, d: dict) -> "ComposeTrainConfig":
        return config_from_dict(cls, d)


@dataclass
class ComposeResult:
    out: Path
    history: list[dict]  # one row per epoch (row 0: before training)
    baselines: dict  # method -> metrics on the evaluation split (image, text, fusion)
    composer: object  # the trained composer (eval mode)
    resumed_from: int = 0  # the epoch a resumed run continued after (0: a fresh run)


class _Features:
    """What :func:`xmr.train.features.cached_features` reads: media paths and texts."""

    def __init__(self, media, texts):
        self.media, self.texts = list(media), list(texts)

    def __len__(self):
        return len(self.media)

    @property
    def num_texts(self):
        return len(self.texts)


def encode_dataset(encoder, ds, show_progress=None):
    """(gallery (N, d), query texts (Q, d), descriptions (N, d) or None) of a composed dataset, through the
    feature cache."""
    from .features import cached_features

    texts = [q.text for q in ds.queries] + list(ds.descriptions or [])
    img, txt, _ = cached_features(encoder, _Features(ds.media, texts), show_progress=show_progress)
    q = len(ds.queries)
    return img, txt[:q], (txt[q:] if ds.descriptions is not None else None)


def _batch_ce(q: torch.Tensor, k: torch.Tensor, scale: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Batch classification loss; ``positives`` (B, B) bool: other keys that are correct for the row (masked)."""
    logits = scale * (q @ k.T)
    eye = torch.eye(len(q), dtype=torch.bool, device=q.device)
    logits = logits.masked_fill(positives & ~eye, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def composer_loss(composer, ref, txt, tgt, positives, ref_desc=None, tgt_desc=None) -> tuple[torch.Tensor, dict]:
    """The composer's objective on one batch: ``compose`` (TIRG: c(v_ref, m) -> v_tgt), plus for JVSM
    ``semantic`` (c(s_ref, m) -> v_tgt) and ``matching`` (c(v_ref, m) -> s_tgt), weighted by its config."""
    scale = composer.logit_scale.exp().clamp(max=100.0)
    q = composer(ref, txt)
    terms = {"compose": _batch_ce(q, tgt, scale, positives)}
    if "semantic" in composer.objective:
        if ref_desc is None:
            raise ConfigError(f"composer {composer.name} trains on item descriptions, and this dataset has none "
                              f"(fashioniq): use --composer tirg")
        qs = composer(ref_desc, txt, reference_is_text=True)
        terms["semantic"] = composer.config.semantic_weight * _batch_ce(qs, tgt, scale, positives)
        terms["matching"] = composer.config.matching_weight * _batch_ce(q, tgt_desc, scale, positives)
    total = sum(terms.values())
    return total, {f"loss_{k}": float(v.detach()) for k, v in terms.items()}


class _Saver:
    """What :func:`xmr.train.state.save_epoch` saves as the model: the composer's config.json + weights."""

    def __init__(self, composer):
        self.composer = composer

    def save(self, directory, training: dict, heads=None) -> None:
        from ..compose import save_composer

        save_composer(self.composer, directory, training)


def _resume_state(out: Path, cfg: "ComposeTrainConfig", resume: bool):
    """The checkpoint to continue (``resume``), or None for a fresh run; refuses a folder that is not a run, a run
    without ``resume``, and a run of other settings (only ``epochs`` may grow). Nothing is written."""
    from .state import check_out, load_state

    ckpt = check_out(out, resume)
    if ckpt is None:
        return None
    saved = load_state(ckpt)
    old = saved[0].get("config", {})
    if {**old, "epochs": cfg.epochs} != asdict(cfg):
        diff = sorted(k for k in set(old) | set(asdict(cfg)) if k != "epochs" and old.get(k) != asdict(cfg).get(k))
        raise ConfigError(f"--resume: {out} was trained with other settings ({', '.join(diff)} differ); give the "
                          "same ones (only --epochs may grow)")
    if cfg.epochs < saved[0]["epoch"]:
        raise ConfigError(f"--resume: {out} has already trained {saved[0]['epoch']} epochs; --epochs "
                          f"{cfg.epochs} would go back (only --epochs may grow)")
    return saved


def train_composer(cfg: ComposeTrainConfig, out: str | Path, *, encoder=None, show_progress: bool | None = None,
                   device: str | None = None, resume: bool = False) -> ComposeResult:
    """Train ``cfg.composer`` into ``out`` (a new or empty folder); see the module docstring. ``encoder``: the
    frozen ``cfg.model`` already built (benchmarks share one). ``resume=True`` continues the run in ``out`` from
    its newest checkpoint (same settings; only ``epochs`` may grow)."""
    from ..compose import create_composer
    from ..data.composed import load_composed
    from ..encoders import absolute_spec, create_encoder
    from ..eval.composed import evaluate_composed_embeddings
    from .report import plot_curve, write_csv

    from .state import save_epoch

    out = Path(out).expanduser()
    saved = _resume_state(out, cfg, resume)
    train_ds = load_composed(cfg.dataset, cfg.split, seed=cfg.seed)
    eval_ds = load_composed(cfg.dataset, cfg.eval_split) if cfg.eval_split else None
    if encoder is not None and encoder.spec != cfg.model:
        raise ConfigError(f"the encoder given ({encoder.spec}) is not --model {cfg.model}")
    enc = encoder if encoder is not None else create_encoder(cfg.model, device=device)
    if not (enc.capabilities.text and enc.capabilities.images):
        raise ConfigError(f"a composer needs an encoder with text and image towers; {cfg.model} has not both")
    G, T, D = encode_dataset(enc, train_ds, show_progress)
    if G.shape[1] != T.shape[1]:
        raise ConfigError(f"{cfg.model}: image width {G.shape[1]} != text width {T.shape[1]}; composers work in one "
                          f"joint space")
    spec = absolute_spec(cfg.model)
    composer = create_composer(cfg.composer, **{**cfg.composer_config, "dim": int(G.shape[1]), "hidden": cfg.hidden,
                                                "encoder": spec, "seed": cfg.seed})
    if "semantic" in composer.objective and D is None:
        raise ConfigError(f"composer {cfg.composer} trains on item descriptions, and {train_ds.name} has none: "
                          f"use --composer tirg")
    ev = encode_dataset(enc, eval_ds, show_progress) if eval_ds is not None else None
    baselines = {}
    if ev is not None:
        for m in ("image", "text", "fusion"):
            baselines[m] = evaluate_composed_embeddings(eval_ds, ev[0], ev[1], m)
    refs = np.array([q.reference for q in train_ds.queries])
    tgts = np.array([q.target for q in train_ds.queries])
    target_sets = [set(q.targets) for q in train_ds.queries]
    g, t = torch.from_numpy(G), torch.from_numpy(T)
    d = torch.from_numpy(D) if D is not None else None
    opt = torch.optim.AdamW(composer.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []

    def evaluate(row: dict) -> dict:
        if ev is not None:
            composer.eval()
            row.update(evaluate_composed_embeddings(eval_ds, ev[0], ev[1], "composer", composer))
            row.pop("queries", None)
        return row

    first, step = 0, 0
    if saved is not None:
        meta, system, optim, rng_state = saved
        composer.load_state_dict(system)
        opt.load_state_dict(optim)
        history, first, step = meta["history"], meta["epoch"], meta["step"]
    else:
        history.append(evaluate({"epoch": 0, "steps": 0}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if saved is not None:
            torch.set_rng_state(saved[3])
        for epoch in range(first, cfg.epochs):
            t0 = time.perf_counter()
            composer.train()
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(refs))
            total, logs_sum, n = 0.0, {}, 0
            for s in range(0, len(order), cfg.batch_size):
                b = order[s: s + cfg.batch_size]
                if len(b) < 2:
                    continue
                pos = torch.tensor([[tgts[j] in target_sets[i] for j in b] for i in b])
                loss, logs = composer_loss(composer, g[refs[b]], t[b], g[tgts[b]], pos,
                                           None if d is None else d[refs[b]], None if d is None else d[tgts[b]])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                n += 1
                total += float(loss.detach())
                for k, v in logs.items():
                    logs_sum[k] = logs_sum.get(k, 0.0) + v
            row = {"epoch": epoch + 1, "steps": step, "train_loss": round(total / max(n, 1), 6),
                   "train_s": round(time.perf_counter() - t0, 3),
                   **{k: round(v / max(n, 1), 6) for k, v in logs_sum.items()}}
            history.append(evaluate(row))
            training = {"config": asdict(cfg), "epochs_done": epoch + 1, "metrics": row, "baselines": baselines,
                        "train_triplets": len(refs), "dataset": train_ds.name}
            save_epoch(out, epoch + 1, _Saver(composer), composer.state_dict(), opt,
                       {"training": training, "config": asdict(cfg), "history": history, "step": step})
            write_csv(out / "metrics.csv", history)
            plot_curve(out / "curve.png", history, f"{cfg.composer} on {cfg.model}, {train_ds.name}",
                       keys=("R@1", "R@10", "R@50"))
            log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs, ", ".join(f"{k} {v}" for k, v in row.items()))
    composer.eval()
    composer.directory = str(out)
    return ComposeResult(out, history, baselines, composer, resumed_from=first)


__all__ = ["ComposeResult", "ComposeTrainConfig", "composer_loss", "encode_dataset", "train_composer"]
