"""Checkpoints of a training run, JSON + safetensors only (no pickle), one folder per epoch:

``OUT/checkpoints/epoch-NNNN/``: ``config.json`` + ``model.safetensors`` (a ``trained:`` model), ``state.safetensors``
(every tensor of the model and the loss — momentum encoders, queues, peer networks, clean/noisy split — the
optimiser's moments and torch's RNG state) and ``state.json`` (epoch, step, the optimiser's scalar state, the metrics
history, the :class:`~xmr.train.config.TrainConfig`). Written into a temporary folder and renamed, so a kill leaves
either the whole epoch or none of it. ``OUT/config.json`` + ``OUT/model.safetensors`` are the newest epoch's model.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, flatten_optimizer, unflatten_optimizer
from ..errors import ConfigError

CKPT_DIR = "checkpoints"
_EPOCH = re.compile(r"^epoch-(\d{4,})$")


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    d = out / CKPT_DIR
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _EPOCH.match(p.name)
        if m and (p / "state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def save_epoch(out: Path, epoch: int, model, system_state: dict, optimizer, meta: dict, keep: int = 2,
               heads: dict | None = None) -> Path:
    """Write ``OUT/checkpoints/epoch-{epoch}`` atomically, refresh ``OUT``'s model files, keep the newest ``keep``.
    ``heads``: the loss's extra heads saved with the model (:meth:`TrainLoss.export_heads`)."""
    from safetensors.torch import save_file

    d = out / CKPT_DIR
    d.mkdir(parents=True, exist_ok=True)
    final = d / f"epoch-{epoch:04d}"
    tmp = d / f".tmp-epoch-{epoch:04d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save(tmp, meta.get("training", {}), heads)
    opt_t, opt_meta = flatten_optimizer(optimizer.state_dict())
    tensors = {f"system.{k}": v.detach().cpu().contiguous() for k, v in system_state.items()}
    tensors.update({k: v.detach().cpu().contiguous() for k, v in opt_t.items()})
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**meta, "epoch": epoch, "optimizer": opt_meta}, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for name in (CONFIG_FILE, WEIGHTS_FILE):  # the newest model, loadable as trained:OUT
        shutil.copyfile(final / name, out / f".{name}.tmp")
        os.replace(out / f".{name}.tmp", out / name)
    for _, old in list_checkpoints(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return final


def load_state(path: Path) -> tuple[dict, dict, dict, torch.Tensor]:
    """(meta from state.json, system state dict, optimizer state dict, torch RNG state) of one epoch folder."""
    from safetensors.torch import load_file

    meta = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    system = {k[len("system."):]: v for k, v in tensors.items() if k.startswith("system.")}
    optim = unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("optim.")}, meta["optimizer"])
    return meta, system, optim, tensors["rng.torch"]


def check_out(out: Path, resume: bool) -> Path | None:
    """The newest checkpoint to resume from, or None for a fresh run. Refuses (ConfigError, nothing touched) an
    ``out`` that is a file, a non-empty folder that holds no training run, a run without ``resume``, and
    ``resume`` without a run."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder (nothing was written)")
    ckpts = list_checkpoints(out) if out.is_dir() else []
    if ckpts:
        if not resume:
            raise ConfigError(f"--out {out} already holds a training run (epoch {ckpts[-1][0]}); pass --resume to "
                              "continue it, or give a new --out (nothing was overwritten)")
        return ckpts[-1][1]
    # a run killed before its first checkpoint leaves at most checkpoints/.tmp-epoch-*: it starts again
    if out.is_dir() and any(p.name != CKPT_DIR or not p.is_dir() for p in out.iterdir()):
        raise ConfigError(f"--out {out} exists and is not a training run (no {CKPT_DIR}/epoch-*/state.json); give a "
                          "new or empty folder (nothing was overwritten)")
    if resume:
        raise ConfigError(f"--resume: {out} holds no checkpoint to resume from; drop --resume to start a run")
    return None


__all__ = ["CKPT_DIR", "check_out", "list_checkpoints", "load_state", "save_epoch"]
