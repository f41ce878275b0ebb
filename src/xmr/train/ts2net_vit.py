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
Not done here (unlike ``xmr train``): per-epoch evaluation, checkpoints and ``--resume``, mixed precision.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

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
                     cache_frozen: bool = False):
    """Train ``model`` (a :class:`~xmr.heads.ts2net_vit.TS2NetViT`) in place; returns it in eval mode with
    ``model.history`` (mean loss per epoch).

    Args:
        pixels: (N_v, T, 3, H, W) frames per video.
        texts: tokenizer outputs (dict of (N_t, L) tensors) for CLIP's text tower, or with ``text_tower`` that
            module's inputs (N_t, ...).
        pairs: (text index, video index) positives; every video with at least one caption is trained on.
        lr: learning rate of the CLIP weights; ``head_lr`` (default ``lr``) of the TS2-Net parts and ``text_tower``.
        cache_frozen: with ``finetune="last:N"``, run the frozen embeddings and first blocks once and keep their
            output (N_v, T, 1 + P, W) in memory (exact: they are frozen and not shifted; memory-hungry for real ViTs).
    """
    n_videos = pixels.shape[0]
    n_texts = len(next(iter(texts.values()))) if isinstance(texts, dict) else len(texts)
    by_video = _group(pairs, n_texts, n_videos)
    videos = np.asarray([v for v, ts in enumerate(by_video) if len(ts)])
    if len(videos) < 2:
        raise ConfigError("ts2net-vit training needs at least 2 videos with captions (contrastive loss)")
    if pixels.shape[1] > model.config.max_frames:
        raise ConfigError(f"{pixels.shape[1]} frames per video > max_frames {model.config.max_frames}")
    set_trainable(model, finetune, label)
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
        pixels = torch.cat([model.prefix_hidden(pixels[s: s + 16].to(model.logit_scale.device), start).cpu()
                            for s in range(0, len(pixels), 16)])
    clip_p = [p for p in model.clip.parameters() if p.requires_grad]
    head_p = [p for n, p in model.named_parameters() if not n.startswith("clip.")]
    if text_tower is not None:
        head_p += list(text_tower.parameters())
    groups = [{"params": head_p, "lr": head_lr or lr}] + ([{"params": clip_p, "lr": lr}] if clip_p else [])
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    dev = model.logit_scale.device
    model.train()
    if text_tower is not None:
        text_tower.train()
    history, t0 = [], time.perf_counter()
    for ep in range(epochs):
        order = rng.permutation(videos)
        total, steps = 0.0, 0
        for s in range(0, len(order), batch_size):
            vb = order[s: s + batch_size]
            if len(vb) < 2:
                continue
            tb = torch.as_tensor(np.asarray([rng.choice(by_video[v]) for v in vb]))
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
            total, steps = total + float(loss.detach()), steps + 1
        history.append(total / max(steps, 1))
        log.debug("ts2net-vit epoch %d: loss %.4f", ep + 1, history[-1])
    log.info("trained ts2net-vit: %d epochs in %.1f s", epochs, time.perf_counter() - t0)
    model.eval()
    if text_tower is not None:
        text_tower.eval()
    model.history = history
    return model


__all__ = ["set_trainable", "text_inputs", "train_ts2net_vit", "video_pixels"]
