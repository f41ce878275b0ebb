"""Saved models: one folder with ``config.json`` (JSON, ``{"model": FORMAT, ...}``) and ``model.safetensors``.

Every trainable xmr component (the ``tiny`` encoder, video heads, the learned query weighting, the cross-attention
matcher) saves and loads through here, so they share one on-disk layout and one set of errors:

* a missing folder or file -> :class:`~xmr.errors.ModelUnavailableError` naming it, plus the caller's hint;
* an unreadable ``config.json``, or one whose ``"model"`` is not the expected format -> :class:`~xmr.errors.ConfigError`;
* weights that are corrupt or do not fit the module built from the config -> ``ModelUnavailableError``
  ("... does not fit ...").

Usage::

    save_checkpoint(d, "xmr-tiny", asdict(config), model.state_dict())
    ckpt = load_checkpoint(d, "xmr-tiny", f"tiny:{d}", hint="save one with TinyDualEncoder.save(dir)")
    model = ckpt.load_into(TinyDualEncoder(TinyConfig.from_dict(ckpt.config)))

Never a pickle: safetensors holds only tensors, and the config is plain JSON. torch is imported on first use.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .errors import ConfigError, ModelUnavailableError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

M = TypeVar("M")


def save_checkpoint(directory: str | Path, format: str, config: Mapping[str, Any], state_dict,
                    extra: Mapping[str, Any] | None = None, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``directory/config.json`` and ``directory/model.safetensors`` (the folder is created if needed).

    ``config.json`` is ``{"model": format, **config, **extra}`` (in that key order, indent 2, trailing newline):
    ``config`` is the component's config (e.g. ``asdict(cfg)``), ``extra`` what is not part of it (provenance such
    as ``{"training": info}``). ``state_dict`` is a mapping name -> tensor, or a module (its ``state_dict()``); the
    tensors are detached, moved to the CPU and made contiguous. The safetensors header metadata is
    ``{"format": "pt", "model": format, **metadata}``. Returns the folder."""
    from safetensors.torch import save_file

    if hasattr(state_dict, "state_dict"):
        state_dict = state_dict.state_dict()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    body = {"model": format, **config, **(extra or {})}
    (d / CONFIG_FILE).write_text(json.dumps(body, indent=2) + "\n")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(d / WEIGHTS_FILE), metadata={"format": "pt", "model": format, **(metadata or {})})
    return d


@dataclass
class Checkpoint:
    """A checked checkpoint folder. ``config`` is ``config.json`` without its ``"model"`` key (callers pop their own
    extra keys from it); the weights are read only by :meth:`state_dict` / :meth:`load_into`."""

    directory: Path
    format: str
    label: str  # prefix of error messages, e.g. "tiny:./ckpt"
    config: dict = field(default_factory=dict)

    @property
    def weights_path(self) -> Path:
        return self.directory / WEIGHTS_FILE

    def state_dict(self) -> dict:
        """name -> CPU tensor. A corrupt file raises ModelUnavailableError."""
        from safetensors.torch import load_file

        try:
            return load_file(str(self.weights_path), device="cpu")
        except Exception as e:  # safetensors header errors, truncated files
            raise _does_not_fit(self.label, e) from None

    def arrays(self) -> dict:
        """name -> numpy array, read without torch (for components that compute in numpy, e.g. the concept
        adapter on the torch-free search path). A corrupt file raises ModelUnavailableError."""
        from safetensors.numpy import load_file

        try:
            return load_file(str(self.weights_path))
        except Exception as e:  # safetensors header errors, truncated files
            raise _does_not_fit(self.label, e) from None

    def load_into(self, module: M) -> M:
        """Load the weights into ``module`` (strict) and return it; see :func:`load_state`."""
        return load_state(module, self.state_dict(), self.label)


def load_checkpoint(directory: str | Path, format: str, label: str, *, hint: str = "",
                    what: str | None = None) -> Checkpoint:
    """Check a folder written by :func:`save_checkpoint` with this ``format`` and read its ``config.json``.

    ``label`` starts every error message (e.g. ``f"tiny:{directory}"``), ``hint`` ends the missing-file ones (how
    to make such a folder), ``what`` names the expected config in the wrong-format error (``"... is not a
    {what}"``; default ``"{format} config"``). Raises ModelUnavailableError when the folder or one of the two files
    is missing, ConfigError when ``config.json`` is unreadable, not a JSON object or of another format."""
    d = Path(directory).expanduser()
    tail = f"; {hint}" if hint else ""
    if not d.is_dir():
        raise ModelUnavailableError(f"{label}: directory not found{tail}")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (d / name).is_file():
            raise ModelUnavailableError(f"{label}: {name} is missing{tail}")
    try:
        raw = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{label}: {CONFIG_FILE} is not UTF-8 text (byte offset {e.start})") from None
    except RecursionError:
        raise ConfigError(f"{label}: {CONFIG_FILE} is nested too deeply to be a model config") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{label}: unreadable {CONFIG_FILE} ({e})") from None
    if not isinstance(raw, dict) or raw.pop("model", None) != format:
        raise ConfigError(f"{label}: {CONFIG_FILE} is not a {what or format + ' config'}")
    return Checkpoint(d, format, label, raw)


def load_state(module: M, state_dict: Mapping[str, Any], label: str) -> M:
    """``module.load_state_dict(state_dict)`` (strict), or ModelUnavailableError "LABEL: model.safetensors does not
    fit config.json ..." for missing / unexpected keys and shape mismatches. Returns ``module``."""
    try:
        module.load_state_dict(state_dict)
    except Exception as e:  # missing / unexpected keys, shape mismatches
        raise _does_not_fit(label, e) from None
    return module


def _does_not_fit(label: str, e: Exception) -> ModelUnavailableError:
    detail = " ".join(str(e).split())  # torch lists the mismatches on several lines: one line here
    if len(detail) > 400:
        detail = detail[:400] + "..."
    return ModelUnavailableError(f"{label}: {WEIGHTS_FILE} does not fit {CONFIG_FILE} or is corrupt ({detail})")


def flatten_optimizer(sd: dict) -> tuple[dict, dict]:
    """An optimiser's ``state_dict`` as safetensors-ready tensors (``optim.<param id>.<key>``) + JSON-ready rest
    (param groups and scalar state): what every trainer's epoch checkpoint stores, no pickle."""
    import torch

    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    """The inverse of :func:`flatten_optimizer`: a ``state_dict`` for ``optimizer.load_state_dict``."""
    state: dict = {}
    for name, v in tensors.items():
        if name.startswith("optim."):
            _, pid, k = name.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}



def build_registered(ckpt: "Checkpoint", registry, key: str, label: str, noun: str, directory):
    """The component a registry-backed checkpoint holds: ``config.json`` = ``{key: name, "training": ..., **Config
    fields}``; the class is ``registry.get(name)``, built from its ``Config`` and loaded with the weights, in eval mode,
    with ``.directory`` set. ConfigError when the config names no component or has fields the class does not know
    (``label`` names the folder, ``noun`` the component, e.g. "composer")."""
    from dataclasses import fields as _fields

    from .config import config_from_dict

    cfg = dict(ckpt.config)
    name = cfg.pop(key, None)
    cfg.pop("training", None)
    if not isinstance(name, str):
        raise ConfigError(f"{label}: config.json names no {noun}")
    cls = registry.get(name)
    unknown = sorted(set(cfg) - {f.name for f in _fields(cls.Config)})
    if unknown:
        raise ConfigError(f"{label}: config.json has fields {unknown} that {noun} {name!r} does not know (written by "
                          "a newer xmr?)")
    module = cls(config_from_dict(cls.Config, cfg))
    ckpt.load_into(module)
    module.eval()
    module.directory = str(Path(directory))
    return module

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "Checkpoint", "build_registered", "flatten_optimizer", "load_checkpoint", "load_state",
           "save_checkpoint", "unflatten_optimizer"]
