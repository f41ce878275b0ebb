"""Checkpoints and ``--resume`` of the faithful TS2-Net trainer (:mod:`xmr.train.ts2net_vit`), on the helpers every
xmr trainer shares (:mod:`xmr.train.state`).

``OUT/checkpoints/epoch-NNNN/`` (written into a temporary folder and renamed; the newest ``keep`` are kept):

* ``config.json`` + ``model.safetensors``: the epoch's model as a ``ts2net:DIR`` folder (:func:`save_ts2net_vit`:
  the whole CLIP under ``clip.*`` plus the TS2-Net parts), also copied to ``OUT/config.json`` /
  ``OUT/model.safetensors``, so ``OUT`` loads as ``ts2net:OUT`` after every checkpoint, in the format it always had;
* ``state.safetensors``: AdamW's moments, torch's CPU RNG state and a GPU run's CUDA RNG states (``rng.*``, the
  helpers every trainer shares: :func:`xmr.train.state.rng_tensors`; runs saved before them hold the one device's
  state as ``system.cuda_rng``, still restored), a replacement text tower's weights (``system.text_tower.*``); the
  model's weights are not stored twice (they are read back from the epoch's ``model.safetensors``);
* ``state.json``: the epoch, the step, AdamW's scalar state, the history, numpy's batch-order generator state and the
  :class:`TS2NetViTTrainConfig` (a resumed run must use the same one; only ``epochs`` may grow).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ..config import config_from_dict
from ..errors import ConfigError

TRAINER = "ts2net-vit"  # state.json's "trainer": a folder of another trainer's run is not resumed here


@dataclass(frozen=True)
class TS2NetViTTrainConfig:
    """Everything that decides what a ts2net-vit run computes (saved in every checkpoint)."""

    finetune: str = "whole"  # what of CLIP is trained: whole, last:N, projections
    epochs: int = 10
    lr: float = 1e-4  # learning rate of the CLIP weights
    head_lr: float | None = None  # of the TS2-Net parts and a replacement text tower (None: lr)
    batch_size: int = 32
    seed: int = 0  # batch order, caption draws, and (checkpointed runs) torch's RNG: the perturbed top-k's noise
    weight_decay: float = 0.01
    cache_frozen: bool = False  # last:N only: the frozen prefix's output computed once
    text_tower: str | None = None  # class name of a module that replaces CLIP's text tower (None: CLIP's own)
    model: dict = field(default_factory=dict)  # the TS2NetViTConfig fields
    data: dict = field(default_factory=dict)  # what it trains on: the caller's provenance, videos, captions, frames

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0 or (self.head_lr is not None and self.head_lr <= 0):
            raise ConfigError(f"ts2net-vit: need epochs >= 1, batch size >= 2 and learning rates > 0 (got "
                              f"{self.epochs}, {self.batch_size}, {self.lr}, {self.head_lr})")

    @classmethod
    def for_run(cls, model_config, *, videos: int, captions: int, pairs: int, frames: int,
                provenance: dict | None = None, text_tower: str | None = None, **settings) -> "TS2NetViTTrainConfig":
        """The config of a run of :func:`~xmr.train.ts2net_vit.train_ts2net_vit` (which builds it this way, and the
        CLI too, to check ``--out`` before decoding): ``model_config`` a TS2NetViTConfig, the data's counts,
        the caller's ``provenance`` (JSON values), ``settings`` the trainer's (finetune, epochs, lr, ...)."""
        data = {**(provenance or {}), "videos": int(videos), "captions": int(captions), "pairs": int(pairs),
                "frames_per_video": int(frames)}
        return cls(**settings, text_tower=text_tower, model=json.loads(json.dumps(asdict(model_config))),
                   data=json.loads(json.dumps(data)))  # as read back from state.json (tuples -> lists)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TS2NetViTTrainConfig":
        return config_from_dict(cls, d)

    def differences(self, other: "TS2NetViTTrainConfig", ignore=("epochs",)) -> list[str]:
        """Names of the settings that differ (``model.select_k``, ``data.split`` inside the two dicts)."""
        out = []
        for f in fields(self):
            if f.name in ignore:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, dict) and isinstance(b, dict):
                out += [f"{f.name}.{k}" for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k)]
            elif a != b:
                out.append(f.name)
        return out


class ModelSaver:
    """What :func:`xmr.train.state.save_epoch` saves as an epoch's model: a ``ts2net:DIR`` folder."""

    def __init__(self, model, base: str):
        self.model, self.base = model, base

    def save(self, directory, training: dict, heads=None) -> None:
        from ..heads.ts2net_vit import save_ts2net_vit

        save_ts2net_vit(self.model, directory, self.base, training)


def open_run(out: str | Path, cfg: TS2NetViTTrainConfig, resume: bool) -> tuple[Path, dict] | None:
    """(newest checkpoint folder, its state.json) to continue, or None for a fresh run. Reads only JSON, so callers
    check ``--out`` before decoding any video. Refuses (ConfigError, nothing touched) what
    :func:`xmr.train.state.check_out` refuses (a file, a non-empty folder that is no run, a run without ``resume``,
    ``resume`` without a run), another trainer's run, a run of other settings (naming them) and fewer epochs than
    already trained."""
    from .state import check_out

    out = Path(out).expanduser()
    ckpt = check_out(out, resume)
    if ckpt is None:
        return None
    try:
        meta = json.loads((ckpt / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"--resume: {ckpt / 'state.json'} is unreadable ({e}); give a new --out") from None
    if not isinstance(meta, dict) or meta.get("trainer") != TRAINER:
        raise ConfigError(f"--resume: {out} holds a run of another trainer, not of --head ts2net-vit; give a new "
                          "--out (nothing was overwritten)")
    saved = TS2NetViTTrainConfig.from_dict(meta["config"])
    diff = cfg.differences(saved)
    if diff:
        raise ConfigError(f"--resume: {out} was trained with other settings ({', '.join(diff)} differ); give the same "
                          "ones (only --epochs may grow)")
    if cfg.epochs < meta["epoch"]:
        raise ConfigError(f"--resume: {out} has already trained {meta['epoch']} epochs; --epochs {cfg.epochs} would "
                          "go back (only --epochs may grow)")
    return ckpt, meta


def restore(ckpt: Path, model, optimizer, text_tower=None) -> tuple[dict, torch.Tensor]:
    """Load an epoch's model weights (strict), optimiser state and text tower into the objects given; returns
    (state.json, the saved CPU RNG state) and leaves setting the RNGs to the caller (inside its forked RNG)."""
    from ..checkpoint import load_checkpoint
    from ..heads.ts2net_vit import FORMAT
    from .state import load_cuda_rng, load_state

    label = f"checkpoint {ckpt}"
    load_checkpoint(ckpt, FORMAT, label).load_into(model)
    try:
        meta, system, optim, rng = load_state(ckpt)
        cuda_rng = load_cuda_rng(ckpt)
        optimizer.load_state_dict(optim)
    except Exception as e:  # safetensors header errors, truncated files, optimiser groups that do not fit
        detail = " ".join(str(e).split())[:300]
        raise ConfigError(f"--resume: {label} is corrupt or does not fit this run ({type(e).__name__}: {detail}); "
                          "delete that epoch folder to resume from the one before, or give a new --out") from None
    if text_tower is not None:
        from ..checkpoint import load_state as load_module

        load_module(text_tower, {k[len("text_tower."):]: v for k, v in system.items()
                                 if k.startswith("text_tower.")}, label)
    meta["cuda_rng"], meta["cuda_rng_legacy"] = cuda_rng, system.get("cuda_rng")
    return meta, rng


def system_state(text_tower=None) -> dict:
    """The tensors saved beside the optimiser: a replacement text tower's weights (the RNG states are saved by
    :func:`xmr.train.state.save_epoch` for every trainer)."""
    return {f"text_tower.{k}": v for k, v in text_tower.state_dict().items()} if text_tower is not None else {}


__all__ = ["ModelSaver", "TRAINER", "TS2NetViTTrainConfig", "open_run", "restore", "system_state"]
