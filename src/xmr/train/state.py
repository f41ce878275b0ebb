"""Checkpoints of a training run, JSON + safetensors only (no pickle), one folder per epoch:

``OUT/checkpoints/epoch-NNNN/``: ``config.json`` + ``model.safetensors`` (a ``trained:`` model), ``state.safetensors``
(every tensor of the model and the loss — momentum encoders, queues, peer networks, clean/noisy split — the
optimiser's moments, torch's CPU RNG state and, when the process has initialised CUDA, every CUDA device's RNG state
(``rng.cuda.0``, ``rng.cuda.1``, ...: :func:`rng_tensors`, restored by :func:`restore_cuda_rng`)) and ``state.json``
(epoch, step, the optimiser's scalar state, the metrics history, the :class:`~xmr.train.config.TrainConfig`).
Written into a temporary folder and renamed, so a kill leaves either the whole epoch or none of it. ``OUT/config.json`` + ``OUT/model.safetensors`` are the newest epoch's model.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import torch

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, flatten_optimizer, unflatten_optimizer
from ..errors import ConfigError

CKPT_DIR = "checkpoints"
_EPOCH = re.compile(r"^epoch-(\d{4,})$")
_CUDA_RNG = "rng.cuda."  # + device index
log = logging.getLogger(__name__)


def rng_tensors() -> dict[str, torch.Tensor]:
    """torch's RNG states as checkpoint tensors: ``rng.torch`` (the CPU generator) and, when this process has
    initialised CUDA (a GPU run: the model or a tensor went to a GPU), ``rng.cuda.{i}`` for every visible device
    (``torch.cuda.get_rng_state_all()``). A CPU run writes no ``rng.cuda.*`` (asking CUDA would initialise it)."""
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out.update({f"{_CUDA_RNG}{i}": s.cpu() for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return out


def load_cuda_rng(path: Path) -> list[torch.Tensor]:
    """The CUDA RNG states (device order) saved in an epoch folder's ``state.safetensors``; ``[]`` for a CPU run's
    checkpoint or one written before CUDA states were saved."""
    from safetensors import safe_open

    with safe_open(str(path / "state.safetensors"), framework="pt") as f:
        keys = sorted((int(k[len(_CUDA_RNG):]), k) for k in f.keys()
                      if k.startswith(_CUDA_RNG) and k[len(_CUDA_RNG):].isdigit())
        return [f.get_tensor(k) for _, k in keys]


def restore_cuda_rng(states: list[torch.Tensor], devices: list[int] | None = None) -> int:
    """Set the CUDA generators from ``states`` (:func:`load_cuda_rng`): every saved device that exists here
    (``torch.cuda.set_rng_state_all``), or only those in ``devices`` (a trainer that forks just its own device's RNG).
    Nothing without saved states or without CUDA (a GPU run resumed on a CPU: its CUDA draws do not happen here);
    fewer GPUs than were saved: the first ones, with a warning. Returns how many devices were set."""
    if not states or not torch.cuda.is_available():
        if states:
            log.info("resume: the checkpoint holds CUDA RNG states but CUDA is not available here; not restored")
        return 0
    n = min(len(states), torch.cuda.device_count())
    if n < len(states):
        log.warning("resume: the checkpoint holds the CUDA RNG states of %d devices, %d are visible; restoring the "
                    "first %d (a bit-exact resume needs the same devices)", len(states), n, n)
    if devices is None:
        torch.cuda.set_rng_state_all(states[:n])
        return n
    for i in devices:
        if i < n:
            torch.cuda.set_rng_state(states[i], i)
    return sum(1 for i in devices if i < n)


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
    tensors.update(rng_tensors())
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


__all__ = ["CKPT_DIR", "check_out", "list_checkpoints", "load_cuda_rng", "load_state", "restore_cuda_rng",
           "rng_tensors", "save_epoch"]
