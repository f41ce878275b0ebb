"""Train TS2-Net as the paper does (``xmr train-head --head ts2net-vit --encoder hf:MODEL``): the CLIP model's last
blocks (or all of it) fine-tuned end to end with token shift inside its last ViT blocks, the perturbed top-k token
selection, the temporal transformer and the text-weighted frame aggregation (:mod:`xmr.heads.ts2net_vit`).

Inputs are prepared once: ``frames`` uniform frames per video (``FramePlan.uniform(frames, 224)``, what ``xmr eval``
decodes) through the checkpoint's own image processor -> ``(N, T, 3, H, W)`` pixels; captions through its tokenizer
(the ``hf`` encoder's text policy). Each step takes a batch of distinct videos with one of their captions each and
minimises the symmetric InfoNCE of ``exp(logit_scale) * s(text, video)`` (TS2-Net's ``CrossEn`` both ways, averaged),
AdamW. What is trained: ``finetune`` (``whole`` / ``last:N`` / ``projections``, as ``xmr train --mode finetune``:
:func:`xmr.train.finetune.select_trainable`) of CLIP, plus every TS2-Net part and the logit scale. A ``text_tower``
module may replace CLIP's text tower (the benchmark trains the same word-level GRU for every model).
TS2-Net's own MSR-VTT run trains all of CLIP (``freeze_layer_num 0``) at lr 1e-7 and its new parts at 1e-4.
With ``out``, a checkpoint after every epoch (or every ``save_every``) that ``resume`` continues to the weights of an
uninterrupted run (:mod:`.ts2net_vit_state`); with ``evaluate``, retrieval metrics on an evaluation split after every
epoch (:func:`evaluator`). Not done here: mixed precision.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..heads.train import caption_batches

log = logging.getLogger(__name__)


def video_pixels(encoder, items, frames: int, size: int = 224) -> torch.Tensor:
    """Items -> (N, T, 3, H, W) pixels: ``frames`` uniform frames each, through ``encoder.image_processor``."""
    from ..video import item_frames

    out = []
    for it in items:
        ims = item_frames(it, frames, size)
        out.append(encoder.image_processor(images=ims, return_tensors="pt")["pixel_values"].float())
    return torch.stack(out)


def text_inputs(encoder, texts) -> dict:
    """Captions -> the tokenizer outputs the hf encoder passes to ``get_text_features`` (padded to max_length)."""
    enc = encoder.tokenizer(list(texts), padding="max_length", truncation=True, max_length=encoder.max_length,
                            return_tensors="pt")
    return {k: v for k, v in enc.items() if k in encoder._text_keys}


def set_trainable(model, finetune: str, label: str) -> list[str]:
    """``finetune`` of the CLIP part (whole / last:N / projections) + every TS2-Net part; returns trainable names."""
    from .finetune import parse_how, select_trainable

    part, n = parse_how(finetune)
    if part == "lora":
        raise ConfigError("--finetune lora is not supported for ts2net-vit; use whole (as TS2-Net), last:N or "
                          "projections")
    clip_names = select_trainable(model.clip, part, n, label)
    for name, p in model.named_parameters():
        if not name.startswith("clip."):
            p.requires_grad_(True)
    return [f"clip.{n}" for n in clip_names] + [n for n, _ in model.named_parameters() if not n.startswith("clip.")]


def _group(pairs, n_texts: int, n_videos: int) -> list[np.ndarray]:
    by_video: list[list[int]] = [[] for _ in range(n_videos)]
    for t, v in pairs:
        if not (0 <= t < n_texts and 0 <= v < n_videos):
            raise ConfigError(f"pairs index out of range ({n_texts} texts, {n_videos} videos)")
        by_video[v].append(t)
    return [np.asarray(ts, dtype=np.int64) for ts in by_video]


def train_ts2net_vit(model, pixels: torch.Tensor, texts, pairs, *, finetune: str = "whole", epochs: int = 10,
                     lr: float = 1e-4, head_lr: float | None = None, batch_size: int = 32, seed: int = 0,
                     weight_decay: float = 0.01, text_tower: nn.Module | None = None, label: str = "hf model",
                     cache_frozen: bool = False, out: str | Path | None = None, base: str | None = None,
                     resume: bool = False, keep: int = 2, save_every: int = 1, provenance: dict | None = None,
                     evaluate: Callable[[nn.Module], dict] | None = None,
                     on_step: Callable[[int, int], None] | None = None):
    """Train ``model`` (a :class:`~xmr.heads.ts2net_vit.TS2NetViT`) in place; returns it in eval mode with
    ``model.history`` (mean loss per epoch) and ``model.metrics`` (one row per epoch: epoch, steps, train_loss,
    train_s, the ``evaluate`` metrics; row 0 is the evaluation before training when there is one).

    Args:
        pixels: (N_v, T, 3, H, W) frames per video.
        texts: tokenizer outputs (dict of (N_t, L) tensors) for CLIP's text tower, or with ``text_tower`` that
            module's inputs (N_t, ...).
        pairs: (text index, video index) positives; every video with at least one caption is trained on.
        lr: learning rate of the CLIP weights; ``head_lr`` (default ``lr``) of the TS2-Net parts and ``text_tower``.
        cache_frozen: with ``finetune="last:N"``, run the frozen embeddings and first blocks once and keep their
            output (N_v, T, 1 + P, W) in memory (exact: they are frozen and not shifted; memory-hungry for real ViTs).
        out: checkpoint the run there (:mod:`.ts2net_vit_state`) every ``save_every`` epochs and after the last,
            keeping the newest ``keep`` (0: all); ``out`` itself then holds the newest epoch's model as a
            ``ts2net:DIR`` folder of ``base`` (the ``hf:`` spec). ``resume`` continues the newest checkpoint in
            ``out`` (same settings, only ``epochs`` may grow) to the weights an uninterrupted run ends with. A
            checkpointed run draws the perturbed top-k's noise from torch's RNG seeded with ``seed`` (forked: the
            caller's RNG is untouched); without ``out`` it draws from the caller's RNG, as before.
        provenance: JSON values saved in the run's config (dataset, split, ...): a resume must give the same.
        evaluate: ``evaluate(model) -> {metric: float}`` after every epoch (and before the first), e.g.
            :func:`evaluator`; it must leave the model's mode and the RNGs as it found them.
        on_step: called with (epoch index, step) after every optimiser step (tests interrupt a run with it).
    """
    from .ts2net_vit_state import TS2NetViTTrainConfig, open_run

    n_videos = pixels.shape[0]
    n_texts = len(next(iter(texts.values()))) if isinstance(texts, dict) else len(texts)
    by_video = _group(pairs, n_texts, n_videos)
    videos = np.asarray([v for v, ts in enumerate(by_video) if len(ts)])
    if len(videos) < 2:
        raise ConfigError("ts2net-vit training needs at least 2 videos with captions (contrastive loss)")
    if pixels.shape[1] > model.config.max_frames:
        raise ConfigError(f"{pixels.shape[1]} frames per video > max_frames {model.config.max_frames}")
    if save_every < 1 or keep < 0:
        raise ConfigError(f"--save-every must be >= 1 and --keep >= 0, got {save_every} and {keep}")
    cfg = TS2NetViTTrainConfig.for_run(
        model.config, videos=n_videos, captions=n_texts, pairs=len(pairs), frames=pixels.shape[1],
        provenance=provenance, text_tower=type(text_tower).__name__ if text_tower is not None else None,
        finetune=finetune, epochs=epochs, lr=lr, head_lr=head_lr, batch_size=batch_size, seed=seed,
        weight_decay=weight_decay, cache_frozen=cache_frozen)
    found = None
    if out is not None:
        if base is None or not base.startswith("hf:"):
            raise ConfigError(f"a checkpointed ts2net-vit run needs base, the hf: spec it fine-tunes, got {base!r}")
        out = Path(out).expanduser()
        found = open_run(out, cfg, resume)  # refuses a wrong --out before anything is trained or written
    elif resume:
        raise ConfigError("resume needs out, the run's folder")
    set_trainable(model, finetune, label)
    clip_p = [p for p in model.clip.parameters() if p.requires_grad]
    head_p = [p for n, p in model.named_parameters() if not n.startswith("clip.")]
    if text_tower is not None:
        head_p += list(text_tower.parameters())
    groups = [{"params": head_p, "lr": head_lr or lr}] + ([{"params": clip_p, "lr": lr}] if clip_p else [])
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    dev = model.logit_scale.device
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, enabled=out is not None):
        history, first, step = [], 0, 0
        if out is not None:
            torch.manual_seed(seed)
        if found is not None:
            from .ts2net_vit_state import restore

            meta, cpu_rng = restore(found[0], model, opt, text_tower)
            torch.set_rng_state(cpu_rng)
            if cuda and meta["cuda_rng"]:  # only this device's: the fork covers no other
                from .state import restore_cuda_rng

                restore_cuda_rng(meta["cuda_rng"], cuda)
            elif cuda and meta["cuda_rng_legacy"] is not None:  # a run saved before the shared rng.cuda.* tensors
                torch.cuda.set_rng_state(meta["cuda_rng_legacy"], dev)
            rng.bit_generator.state = meta["numpy_rng"]
            history, first, step = meta["history"], meta["epoch"], meta["step"]
            log.info("resuming %s after epoch %d", out, first)
        start = 0
        if cache_frozen:
            from .finetune import parse_how

            part, n = parse_how(finetune)
            n_blocks = len(model.clip.vision_model.encoder.layers)
            if part != "last" or n > n_blocks - 1:
                raise ConfigError("cache_frozen needs --finetune last:N with frozen blocks before the last N")
            start = n_blocks - n
            if model.config.shift_layers > n:
                raise ConfigError(f"cache_frozen: shift_layers {model.config.shift_layers} > the {n} trained blocks")
            pixels = torch.cat([model.prefix_hidden(pixels[s: s + 16].to(dev), start).cpu()
                                for s in range(0, len(pixels), 16)])
        model.train()
        if text_tower is not None:
            text_tower.train()
        if first == 0 and evaluate is not None:
            history.append({"epoch": 0, "steps": 0, **evaluate(model)})
        t0 = time.perf_counter()
        for ep in range(first, epochs):
            t1 = time.perf_counter()
            total, steps = 0.0, 0
            for vb, tb in caption_batches(rng, videos, by_video, batch_size):
                tb = torch.as_tensor(tb)
                if text_tower is not None:
                    t = F.normalize(text_tower(texts[tb].to(dev)), dim=-1)
                else:
                    t = model.encode_text(**{k: v[tb].to(dev) for k, v in texts.items()})
                frames = model.frame_embeddings(pixels[torch.as_tensor(vb)].to(dev), start)
                logits = model.similarity(t, frames) * model.logit_scale.exp().clamp(max=100.0)
                target = torch.arange(len(vb), device=dev)
                loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, steps, step = total + float(loss.detach()), steps + 1, step + 1
                if on_step is not None:
                    on_step(ep, step)
            row = {"epoch": ep + 1, "steps": step, "train_loss": total / max(steps, 1),
                   "train_s": round(time.perf_counter() - t1, 3)}
            if evaluate is not None:
                row.update(evaluate(model))
            history.append(row)
            log.info("ts2net-vit epoch %d/%d: %s", ep + 1, epochs,
                     ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
            if out is not None and ((ep + 1) % save_every == 0 or ep + 1 == epochs):
                _checkpoint(out, model, base, text_tower, opt, rng, cfg, history, ep + 1, step, keep)
    log.info("trained ts2net-vit: epochs %d-%d in %.1f s", first + 1, epochs, time.perf_counter() - t0)
    model.eval()
    if text_tower is not None:
        text_tower.eval()
    model.metrics = history
    model.history = [r["train_loss"] for r in history if "train_loss" in r]
    model.resumed_from = first
    return model


def _checkpoint(out: Path, model, base: str, text_tower, opt, rng, cfg, history: list, epoch: int, step: int,
                keep: int) -> None:
    """One epoch's checkpoint (:func:`xmr.train.state.save_epoch`) and ``metrics.csv``."""
    from .report import write_csv
    from .state import save_epoch
    from .ts2net_vit_state import TRAINER, ModelSaver, system_state

    training = {**cfg.data, "finetune": cfg.finetune, "epochs": cfg.epochs, "epochs_done": epoch,
                "lr": cfg.head_lr or cfg.lr, "clip_lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed,
                "loss_per_epoch": [r["train_loss"] for r in history if "train_loss" in r], "metrics": history[-1]}
    meta = {"trainer": TRAINER, "config": cfg.to_dict(), "step": step, "history": history,
            "numpy_rng": rng.bit_generator.state, "training": training}
    save_epoch(out, epoch, ModelSaver(model, base), system_state(text_tower), opt, meta,
               keep=keep)
    write_csv(out / "metrics.csv", history)


def evaluator(pixels: torch.Tensor, texts, text_to_item, protocol: str = "standard",
              batch_size: int = 16) -> Callable[[nn.Module], dict]:
    """``evaluate(model)`` for :func:`train_ts2net_vit`: every caption of an evaluation split against every video,
    scored as ``ts2net:DIR`` scores them in ``xmr eval`` (hard top-k, text-weighted frames), through
    :func:`xmr.eval.evaluate_sims` -> ``t2v_R@1`` ... ``v2t_MdR`` and ``rsum``. ``pixels`` (N_v, T, 3, H, W) and
    ``texts`` (tokenizer outputs) as for training; ``text_to_item[t]``: the video of caption t."""
    from ..eval import evaluate_sims

    t2i = np.asarray(text_to_item)

    @torch.no_grad()
    def evaluate(model) -> dict:
        was = model.training
        model.eval()
        dev = model.logit_scale.device
        try:
            n = len(t2i)
            t = torch.cat([model.encode_text(**{k: v[s: s + 256].to(dev) for k, v in texts.items()})
                           for s in range(0, n, 256)])
            f = torch.cat([model.frame_embeddings(pixels[s: s + batch_size].to(dev))
                           for s in range(0, len(pixels), batch_size)])
            sims = model.similarity(t, f).float().cpu().numpy()
        finally:
            model.train(was)
        m = evaluate_sims(sims, t2i, protocol=protocol)
        row = {f"{a}_{k}": round(float(m[d][k]), 4) for d, a in (("t2i", "t2v"), ("i2t", "v2t"))
               for k in ("R@1", "R@5", "R@10", "MdR")}
        row["rsum"] = round(sum(float(m[d][f"R@{k}"]) for d in ("t2i", "i2t") for k in (1, 5, 10)), 4)
        return row

    return evaluate


__all__ = ["evaluator", "set_trainable", "text_inputs", "train_ts2net_vit", "video_pixels"]
