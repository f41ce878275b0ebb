"""A learned text->concept map for the ``concept`` model, fitted on caption-image pairs (LiT-style: image side locked).

The zero-shot ``concept`` model turns a caption into class weights ``w`` from the cosine between the caption's MiniLM
embedding and the class *texts*. That fails for what ImageNet has no class for: a photo of "a man in a red shirt
running" makes the classifier fire on "jersey", "sweatshirt", "running shoe", ... and no caption text is near those
class names. The adapter learns that link from pairs instead.

Model (locked-image tuning, Zhai et al., CVPR 2022, "LiT": the image tower is frozen and only the text side is
trained; here the "tower" is a single linear map on top of frozen MiniLM embeddings):

* image side (fixed, no parameters learned): ``v = normalize(sqrt(p) - mu)``, with ``p`` the class probabilities the
  encoder already computes and ``mu`` the mean ``sqrt(p)`` of the training images;
* text side: ``t = normalize(W^T [q; 1])``, with ``q`` the MiniLM embedding of the caption (384) and ``W`` (385 x 1000)
  fitted by ridge regression of the paired image's ``sqrt(p) - mu`` (unit-normalised) on ``[q; 1]``:
  ``W = (X^T X + lambda I')^-1 X^T Y`` (the bias row is not penalised).

Deviation from LiT: LiT trains the text tower with a contrastive (InfoNCE) loss on millions of pairs; with the few
thousand pairs available offline a closed-form ridge regression is as good (measured in docs/concept.md, where a
linear InfoNCE map of the same shape did not do better) and deterministic.

The encoder mixes the learned score with the zero-shot Bhattacharyya score:
``s = (1 - a) * sum_c sqrt(p_c w_c) + a * cos(t, v)``, as one inner product of concatenated unit vectors
``[sqrt(1-a) sqrt(w), sqrt(a) t] . [sqrt(1-a) sqrt(p), sqrt(a) v]`` so an inner-product index ranks by it exactly.

Saved as a checkpoint folder (``config.json`` + ``model.safetensors``, :mod:`xmr.checkpoint`); bundled ones live in
``xmr/assets/concept/<name>/`` and record in ``config.json`` exactly which pairs they were fitted on.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._arrays import l2_normalize
from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import config_from_dict
from ..errors import ConfigError

FORMAT = "xmr-concept-adapter"
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "concept"


@dataclass(frozen=True)
class ConceptAdapterConfig:
    text_dim: int = 384  # width of the text embedding fed to the map (all-MiniLM-L6-v2: 384)
    num_classes: int = 1000  # width of the concept space (ImageNet-1k)
    ridge: float = 1.0  # ridge penalty lambda on W (the bias row is not penalised)
    training: dict = field(default_factory=dict)  # provenance: which caption-image pairs W was fitted on

    def __post_init__(self):
        if self.text_dim < 1 or self.num_classes < 1:
            raise ConfigError("concept adapter dimensions must be >= 1")
        if not self.ridge > 0:
            raise ConfigError(f"concept adapter ridge must be > 0, got {self.ridge}")


class ConceptAdapter:
    """``W`` (text_dim + 1, num_classes) and ``mu`` (num_classes,): see the module docstring."""

    def __init__(self, cfg: ConceptAdapterConfig, W: np.ndarray, mu: np.ndarray):
        W = np.asarray(W, np.float32)
        mu = np.asarray(mu, np.float32)
        if W.shape != (cfg.text_dim + 1, cfg.num_classes) or mu.shape != (cfg.num_classes,):
            raise ConfigError(f"concept adapter: W {W.shape} / mu {mu.shape} do not fit text_dim={cfg.text_dim}, "
                              f"num_classes={cfg.num_classes}")
        self.cfg, self.W, self.mu = cfg, W, mu
        self.sha256 = hashlib.sha256(W.tobytes() + mu.tobytes()).hexdigest()[:16]  # identifies the weights

    # ---- fitting -----------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, text_emb: np.ndarray, probs: np.ndarray, text_to_item: np.ndarray, *, ridge: float = 1.0,
            training: dict | None = None) -> "ConceptAdapter":
        """Ridge regression of each caption's image target on its text embedding.

        ``text_emb`` (T, d) unit caption embeddings, ``probs`` (G, C) class probabilities of the G images,
        ``text_to_item`` (T,) the image of each caption."""
        q = np.asarray(text_emb, np.float64)
        p = np.asarray(probs, np.float64)
        t2i = np.asarray(text_to_item)
        if q.ndim != 2 or p.ndim != 2 or t2i.shape != (len(q),) or len(q) == 0:
            raise ConfigError("ConceptAdapter.fit: need text_emb (T, d), probs (G, C), text_to_item (T,)")
        if t2i.min() < 0 or t2i.max() >= len(p):
            raise ConfigError("ConceptAdapter.fit: text_to_item points outside probs")
        cfg = ConceptAdapterConfig(text_dim=q.shape[1], num_classes=p.shape[1], ridge=float(ridge),
                                   training=dict(training or {}))
        s = np.sqrt(p)
        mu = s.mean(axis=0)
        Y = l2_normalize((s - mu).astype(np.float32)).astype(np.float64)[t2i]
        X = np.hstack([q, np.ones((len(q), 1))])
        A = X.T @ X + ridge * np.eye(X.shape[1])
        A[-1, -1] -= ridge  # no penalty on the bias
        W = np.linalg.solve(A, X.T @ Y)
        return cls(cfg, W, mu)

    # ---- encoding ----------------------------------------------------------------------------------------------
    def text(self, text_emb: np.ndarray) -> np.ndarray:
        """(B, text_dim) -> (B, num_classes) unit vectors ``t``."""
        q = np.asarray(text_emb, np.float32)
        if q.ndim != 2 or q.shape[1] != self.cfg.text_dim:
            raise ConfigError(f"concept adapter expects text embeddings of width {self.cfg.text_dim}, got {q.shape}")
        return l2_normalize(q @ self.W[:-1] + self.W[-1])

    def image(self, probs: np.ndarray) -> np.ndarray:
        """(B, num_classes) class probabilities -> (B, num_classes) unit vectors ``v``."""
        p = np.asarray(probs, np.float32)
        if p.ndim != 2 or p.shape[1] != self.cfg.num_classes:
            raise ConfigError(f"concept adapter expects {self.cfg.num_classes} class probabilities, got {p.shape}")
        return l2_normalize(np.sqrt(p) - self.mu)

    # ---- files -------------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        import torch

        cfg = asdict(self.cfg)
        training = cfg.pop("training")
        return save_checkpoint(directory, FORMAT, cfg, {"W": torch.from_numpy(self.W), "mu": torch.from_numpy(self.mu)},
                               extra={"training": training})

    @classmethod
    def load(cls, name_or_dir: str) -> "ConceptAdapter":
        """A bundled adapter by name (``xmr/assets/concept/<name>``) or a checkpoint folder."""
        d = resolve_adapter(name_or_dir)
        ckpt = load_checkpoint(d, FORMAT, f"concept adapter {name_or_dir}",
                               hint="build one with scripts/build_concept_adapter.py")
        cfg = config_from_dict(ConceptAdapterConfig, ckpt.config)
        sd = ckpt.arrays()  # numpy, no torch: a text search with the default model never imports it
        if set(sd) != {"W", "mu"}:
            raise ConfigError(f"concept adapter {name_or_dir}: expected tensors W and mu, got {sorted(sd)}")
        return cls(cfg, sd["W"], sd["mu"])


def bundled_adapters() -> list[str]:
    return sorted(p.name for p in ASSETS.iterdir() if (p / "config.json").is_file()) if ASSETS.is_dir() else []


def resolve_adapter(name_or_dir: str) -> Path:
    if (ASSETS / name_or_dir / "config.json").is_file():
        return ASSETS / name_or_dir
    p = Path(name_or_dir).expanduser()
    if p.is_dir():
        return p
    raise ConfigError(f"concept adapter {name_or_dir!r} not found: neither a bundled one "
                      f"({', '.join(bundled_adapters()) or 'none'}) nor a folder")
