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

Image features (``image_features``): ``"sqrtp"`` uses ``f = sqrt(p)`` (the first adapter); ``"logits"`` uses the
classifier's logits averaged over the views, standardised per image, ``f = (z - mean_c z) / (std_c z * sqrt(C))``.
Softmax probabilities keep only the few top classes of a photo; the logits keep how strongly *every* class fires,
which is what describes a photo of people or a scene that ImageNet has no class for (measured in docs/concept.md:
the larger gain of issue 17's second round).

Optional second map, image -> caption space (``caption_ridge > 0``): ``u = normalize(V^T [v; 1])`` with ``V``
((C + 1) x text_dim) fitted by ridge regression (penalty ``caption_ridge``, bias not penalised) of the caption's
MiniLM embedding ``q`` on the paired image's ``v``; the query side of this part is ``q`` itself. This is the
regression of image features on text features in the other direction (the "image -> text" half of a two-way
linear mapping, as in cross-modal ridge/CCA baselines), so a caption is compared with what captions of similar
training photos said, in MiniLM's space where paraphrases are close.

The encoder mixes the learned scores with the zero-shot Bhattacharyya score:
``s = (1 - a - b) * sum_c sqrt(p_c w_c) + a * cos(t, v) + b * cos(q, u)``, as one inner product of concatenated unit
vectors ``[sqrt(1-a-b) sqrt(w), sqrt(a) t, sqrt(b) q] . [sqrt(1-a-b) sqrt(p), sqrt(a) v, sqrt(b) u]`` so an
inner-product index ranks by it exactly (``b = 0``: no caption part).

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
IMAGE_FEATURES = ("sqrtp", "logits")
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "concept"


@dataclass(frozen=True)
class ConceptAdapterConfig:
    text_dim: int = 384  # width of the text embedding fed to the map (all-MiniLM-L6-v2: 384)
    num_classes: int = 1000  # width of the concept space (ImageNet-1k)
    ridge: float = 1.0  # ridge penalty lambda on W (the bias row is not penalised)
    image_features: str = "sqrtp"  # "sqrtp": f = sqrt(p) | "logits": per-image standardised view-mean logits
    caption_ridge: float = 0.0  # > 0: also fit V, image -> caption space, with this ridge penalty; 0: no V
    training: dict = field(default_factory=dict)  # provenance: which caption-image pairs W was fitted on

    def __post_init__(self):
        if self.text_dim < 1 or self.num_classes < 1:
            raise ConfigError("concept adapter dimensions must be >= 1")
        if not self.ridge > 0:
            raise ConfigError(f"concept adapter ridge must be > 0, got {self.ridge}")
        if self.image_features not in IMAGE_FEATURES:
            raise ConfigError(f"concept adapter image_features must be one of {IMAGE_FEATURES}, "
                              f"got {self.image_features!r}")
        if not self.caption_ridge >= 0:
            raise ConfigError(f"concept adapter caption_ridge must be >= 0 (0: no caption map), got {self.caption_ridge}")


class ConceptAdapter:
    """``W`` (text_dim + 1, num_classes), ``mu`` (num_classes,) and, with ``caption_ridge > 0``, ``V``
    (num_classes + 1, text_dim): see the module docstring."""

    def __init__(self, cfg: ConceptAdapterConfig, W: np.ndarray, mu: np.ndarray, V: np.ndarray | None = None):
        W = np.asarray(W, np.float32)
        mu = np.asarray(mu, np.float32)
        if W.shape != (cfg.text_dim + 1, cfg.num_classes) or mu.shape != (cfg.num_classes,):
            raise ConfigError(f"concept adapter: W {W.shape} / mu {mu.shape} do not fit text_dim={cfg.text_dim}, "
                              f"num_classes={cfg.num_classes}")
        if (V is None) != (cfg.caption_ridge == 0):
            raise ConfigError("concept adapter: a caption map V goes with caption_ridge > 0, and only with it")
        if V is not None:
            V = np.asarray(V, np.float32)
            if V.shape != (cfg.num_classes + 1, cfg.text_dim):
                raise ConfigError(f"concept adapter: V {V.shape} does not fit num_classes={cfg.num_classes}, "
                                  f"text_dim={cfg.text_dim}")
        self.cfg, self.W, self.mu, self.V = cfg, W, mu, V
        blob = W.tobytes() + mu.tobytes() + (b"" if V is None else V.tobytes())
        blob += b"" if cfg.image_features == "sqrtp" else cfg.image_features.encode()  # round-1 hashes unchanged
        self.sha256 = hashlib.sha256(blob).hexdigest()[:16]  # identifies the weights

    @property
    def needs_logits(self) -> bool:
        return self.cfg.image_features == "logits"

    def features(self, probs: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        """The image features ``f`` (before centring) from class probabilities or view-mean logits."""
        if self.cfg.image_features == "sqrtp":
            p = np.asarray(probs, np.float32)
            if p.ndim != 2 or p.shape[1] != self.cfg.num_classes:
                raise ConfigError(f"concept adapter expects {self.cfg.num_classes} class probabilities, got {p.shape}")
            return np.sqrt(p)
        if logits is None:
            raise ConfigError("this concept adapter works on the classifier's logits: pass logits=")
        z = np.asarray(logits, np.float64)
        if z.ndim != 2 or z.shape[1] != self.cfg.num_classes:
            raise ConfigError(f"concept adapter expects {self.cfg.num_classes} logits per image, got {z.shape}")
        z = z - z.mean(axis=1, keepdims=True)
        return (z / (np.maximum(z.std(axis=1, keepdims=True), 1e-12) * np.sqrt(z.shape[1]))).astype(np.float32)

    # ---- fitting -----------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, text_emb: np.ndarray, probs: np.ndarray, text_to_item: np.ndarray, *, ridge: float = 1.0,
            training: dict | None = None, logits: np.ndarray | None = None, image_features: str = "sqrtp",
            caption_ridge: float = 0.0) -> "ConceptAdapter":
        """Ridge regression of each caption's image target on its text embedding (and, with ``caption_ridge > 0``,
        of each caption's embedding on its image's features).

        ``text_emb`` (T, d) unit caption embeddings, ``probs`` (G, C) class probabilities of the G images,
        ``text_to_item`` (T,) the image of each caption; ``logits`` (G, C) view-mean logits for
        ``image_features="logits"``."""
        q = np.asarray(text_emb, np.float64)
        p = np.asarray(probs, np.float64)
        t2i = np.asarray(text_to_item)
        if q.ndim != 2 or p.ndim != 2 or t2i.shape != (len(q),) or len(q) == 0:
            raise ConfigError("ConceptAdapter.fit: need text_emb (T, d), probs (G, C), text_to_item (T,)")
        if t2i.min() < 0 or t2i.max() >= len(p):
            raise ConfigError("ConceptAdapter.fit: text_to_item points outside probs")
        if logits is not None and np.shape(logits) != p.shape:
            raise ConfigError(f"ConceptAdapter.fit: logits {np.shape(logits)} must match probs {p.shape}")
        cfg = ConceptAdapterConfig(text_dim=q.shape[1], num_classes=p.shape[1], ridge=float(ridge),
                                   image_features=image_features, caption_ridge=float(caption_ridge),
                                   training=dict(training or {}))
        probe = cls(cfg, np.zeros((cfg.text_dim + 1, cfg.num_classes)), np.zeros(cfg.num_classes),
                    None if caption_ridge == 0 else np.zeros((cfg.num_classes + 1, cfg.text_dim)))
        f = probe.features(p, logits).astype(np.float64)
        mu = f.mean(axis=0)
        v = l2_normalize((f - mu).astype(np.float32)).astype(np.float64)
        W = _ridge(q, v[t2i], ridge)
        V = None if caption_ridge == 0 else _ridge(v[t2i], q, caption_ridge)
        return cls(cfg, W, mu, V)

    # ---- encoding ----------------------------------------------------------------------------------------------
    def text(self, text_emb: np.ndarray) -> np.ndarray:
        """(B, text_dim) -> (B, num_classes) unit vectors ``t``."""
        q = np.asarray(text_emb, np.float32)
        if q.ndim != 2 or q.shape[1] != self.cfg.text_dim:
            raise ConfigError(f"concept adapter expects text embeddings of width {self.cfg.text_dim}, got {q.shape}")
        return l2_normalize(q @ self.W[:-1] + self.W[-1])

    def image(self, probs: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        """(B, num_classes) class probabilities (and view-mean logits) -> (B, num_classes) unit vectors ``v``."""
        return l2_normalize(self.features(probs, logits) - self.mu)

    def caption(self, image_vec: np.ndarray) -> np.ndarray:
        """(B, num_classes) image vectors ``v`` (from :meth:`image`) -> (B, text_dim) unit vectors ``u`` in the
        caption space; needs a caption map (``caption_ridge > 0``)."""
        if self.V is None:
            raise ConfigError("this concept adapter has no caption map (fitted with caption_ridge=0)")
        v = np.asarray(image_vec, np.float32)
        return l2_normalize(v @ self.V[:-1] + self.V[-1])

    # ---- files -------------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        import torch

        cfg = asdict(self.cfg)
        training = cfg.pop("training")
        arrays = {"W": torch.from_numpy(self.W), "mu": torch.from_numpy(self.mu)}
        if self.V is not None:
            arrays["V"] = torch.from_numpy(self.V)
        return save_checkpoint(directory, FORMAT, cfg, arrays, extra={"training": training})

    @classmethod
    def load(cls, name_or_dir: str) -> "ConceptAdapter":
        """A bundled adapter by name (``xmr/assets/concept/<name>``) or a checkpoint folder."""
        d = resolve_adapter(name_or_dir)
        ckpt = load_checkpoint(d, FORMAT, f"concept adapter {name_or_dir}",
                               hint="build one with python benchmarks/concept_quality.py build-adapter")
        cfg = config_from_dict(ConceptAdapterConfig, ckpt.config)
        sd = ckpt.arrays()  # numpy, no torch: a text search with the default model never imports it
        want = {"W", "mu"} | ({"V"} if cfg.caption_ridge > 0 else set())
        if set(sd) != want:
            raise ConfigError(f"concept adapter {name_or_dir}: expected tensors {sorted(want)}, got {sorted(sd)}")
        return cls(cfg, sd["W"], sd["mu"], sd.get("V"))


def _ridge(X: np.ndarray, Y: np.ndarray, lam: float) -> np.ndarray:
    """``argmin_W |[X, 1] W - Y|^2 + lam |W without its bias row|^2`` in closed form."""
    X1 = np.hstack([X, np.ones((len(X), 1))])
    A = X1.T @ X1 + lam * np.eye(X1.shape[1])
    A[-1, -1] -= lam  # no penalty on the bias
    return np.linalg.solve(A, X1.T @ Y)


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
