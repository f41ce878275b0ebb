"""What every composer shares: :class:`ComposerConfig`, the :class:`Composer` module interface (compose a reference
image's embedding with a modification text's embedding into a query in the same space), and saving / loading as
``config.json`` + ``model.safetensors`` (:mod:`xmr.checkpoint`).

Composers work in the joint space of a *frozen* encoder: inputs are the encoder's L2-normalised image and text
embeddings (B, dim), the output is an L2-normalised query (B, dim) searched against the index's item vectors as they
are (the index is not re-encoded). The config records the encoder spec and width it was trained on, so a search on an
index of another model is refused (:func:`check_compatible`) instead of returning meaningless neighbours.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import ConfigError

FORMAT = "xmr-composer"


@dataclass(frozen=True)
class ComposerConfig:
    """Fields every composer has; a composer's own ``Config`` subclass adds its fields (one-line comment each)."""

    dim: int = 64  # width of the frozen encoder's embeddings (input and output)
    hidden: int = 256  # width of the composition MLPs' hidden layer
    encoder: str = ""  # spec of the frozen encoder whose space the composer works in ("" in tests)
    init_logit_scale: float = math.log(10.0)  # initial log of the batch-classification logit scale (TIRG: a
    #                                           learnable normalisation scale)
    seed: int = 0  # initialisation seed (the global torch RNG is left untouched)

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"dim": (1, 16384), "hidden": (1, 16384),
                                                         "init_logit_scale": (-20, 20)}
    #: most parameters the two composition MLPs may have (800 MB of float32), estimated before anything is built
    MAX_PARAMS: ClassVar[int] = 200_000_000

    def __post_init__(self):
        if self.dim < 1 or self.hidden < 1:
            raise ConfigError(f"{type(self).__name__}: dim and hidden must be >= 1, got {self.dim}, {self.hidden}")
        est = 2 * (2 * self.dim * self.hidden + self.hidden * self.dim)
        if est > self.MAX_PARAMS:
            raise ConfigError(f"{type(self).__name__}: dim {self.dim} x hidden {self.hidden} is about {est:,} "
                              f"parameters, over the {self.MAX_PARAMS:,} limit")


def _torch():
    import torch

    return torch


def check_compatible(composer, dim: int, spec: str | None) -> None:
    """ConfigError unless ``composer`` was trained in the space of an encoder of width ``dim`` and spec ``spec``
    (a composer with no recorded encoder checks the width only)."""
    c = composer.config
    if c.dim != dim:
        raise ConfigError(f"composer {composer.name} works on {c.dim}-d embeddings of {c.encoder or 'its encoder'!r}, "
                          f"but the model searched with ({spec!r}: the index's) gives {dim}-d vectors: train a composer on it "
                          f"(xmr train-compose --model {spec})")
    if c.encoder and spec and c.encoder != spec:
        raise ConfigError(f"composer {composer.name} was trained on encoder {c.encoder!r}, the model searched with is {spec!r}: "
                          f"its queries would be in another space; train one with xmr train-compose --model {spec}")


def compose_numpy(composer, images: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """(B, dim) float32 composed queries (L2-normalised) from reference image and text embeddings (B, dim)."""
    torch = _torch()
    a = np.asarray(images, dtype=np.float32)
    b = np.asarray(texts, dtype=np.float32)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] != composer.config.dim:
        raise ConfigError(f"composer {composer.name}: expected image and text embeddings of shape (B, "
                          f"{composer.config.dim}), got {a.shape} and {b.shape}")
    was = composer.training
    composer.eval()
    try:
        with torch.no_grad():
            out = composer(torch.from_numpy(a), torch.from_numpy(b))
    finally:
        composer.train(was)
    return out.numpy().astype(np.float32)


def save_composer(composer, directory: str | Path, training: dict | None = None) -> Path:
    """Write ``directory/config.json`` (``{"model": "xmr-composer", "composer": NAME, ...config}``) and the
    weights."""
    from ..checkpoint import save_checkpoint

    return save_checkpoint(directory, FORMAT, {"composer": composer.name, **asdict(composer.config)}, composer,
                           extra={"training": training} if training else None)


def load_composer(directory: str | Path):
    """The composer saved in ``directory`` (eval mode). ModelUnavailableError / ConfigError for a missing, foreign
    or damaged folder."""
    from ..checkpoint import build_registered, load_checkpoint
    from ..registries import load_all

    ckpt = load_checkpoint(directory, FORMAT, f"composer {directory}", what="composer (xmr train-compose) folder",
                           hint="train one with xmr train-compose --out DIR")
    return build_registered(ckpt, load_all("composer")["composer"], "composer", f"composer {directory}", "composer",
                            directory)


def create_composer(name: str, **config):
    """A fresh composer ``name`` (a COMPOSERS entry) with its Config built from ``config``."""
    from ..config import config_from_dict
    from ..registries import load_all

    cls = load_all("composer")["composer"].get(name)
    return cls(config_from_dict(cls.Config, config))


__all__ = ["FORMAT", "ComposerConfig", "check_compatible", "compose_numpy", "create_composer", "load_composer",
           "save_composer"]
