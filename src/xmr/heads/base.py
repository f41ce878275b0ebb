"""Shared base of the video heads: config handling, input checks, similarity, save / load."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint  # noqa: F401 (file names re-exported)
from ..config import config_from_dict
from ..errors import ConfigError

_FORMAT = "xmr-video-head"


@dataclass(frozen=True)
class HeadConfig:
    """Fields every head has. Subclasses add their own (one-line comment each)."""

    dim: int = 64  # width of frame features and text embeddings (the shared embedding space)
    max_frames: int = 64  # most frames a head with position embeddings accepts
    num_frames: int = 12  # frames per video the head was trained with; longer inputs are uniformly subsampled to it
    init_logit_scale: float = math.log(1 / 0.07)  # initial log of the similarity scale (CLIP's 1/0.07)
    seed: int = 0  # initialisation seed (the global torch RNG is left untouched)

    #: ranges a config.json is held to before any tensor is allocated (xmr.config.check_values); names of the
    #: subclasses' fields are included
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "dim": (1, 8192), "max_frames": (1, 4096), "num_frames": (1, 4096), "init_logit_scale": (-100, 100),
        "width": (1, 8192), "layers": (1, 48), "heads": (1, 64), "mlp_ratio": (0.0625, 16),
        "num_prototypes": (1, 1024), "select_k": (1, 4096), "text_chunk": (1, 65536), "shift_fraction": (0, 1),
        "dropout": (0, 1)}
    #: most parameters the blocks of a head may have (2 GB of float32), estimated from the sizes before building
    MAX_PARAMS: ClassVar[int] = 500_000_000

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int) and not isinstance(v, bool) and f.name != "seed" and v < 1:
                raise ConfigError(f"{type(self).__name__}: {f.name} must be >= 1, got {v}")
        if self.num_frames > self.max_frames:
            raise ConfigError(f"{type(self).__name__}: num_frames {self.num_frames} > max_frames {self.max_frames}")
        heads = getattr(self, "heads", None)
        if heads and self.dim % heads:
            raise ConfigError(f"{type(self).__name__}: dim {self.dim} is not a multiple of heads {heads}")
        w = max(self.dim, getattr(self, "width", 0))
        est = int(max(1, getattr(self, "layers", 1)) * (4 + 2 * getattr(self, "mlp_ratio", 1.0)) * w * w)
        if est > self.MAX_PARAMS:
            raise ConfigError(f"{type(self).__name__}: about {est:,} parameters, over the {self.MAX_PARAMS:,} limit")

    @classmethod
    def coerce(cls, config=None, **overrides) -> "HeadConfig":
        if config is None:
            config = {}
        if isinstance(config, cls):
            return replace(config, **overrides) if overrides else config
        if not isinstance(config, dict):
            raise ConfigError(f"{cls.__name__}: expected a dict or {cls.__name__}, got {type(config).__name__}")
        return config_from_dict(cls, {**config, **overrides})


class VideoHead(nn.Module):
    """A temporal head. Subclasses set ``name``, ``Config`` and implement :meth:`similarity` (and, when the video
    embedding does not depend on the query, :meth:`embed_video`).

    Shapes: text (B_t, D); frames (B_v, T, D), or for ``patch_tokens`` heads (B_v, T, 1 + P, W).
    Similarities are cosine similarities in [-1, 1] (unscaled); training multiplies them by ``logit_scale.exp()``.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[HeadConfig]] = HeadConfig
    query_independent: ClassVar[bool] = True  # False: the video embedding depends on the text (X-Pool)
    patch_tokens: ClassVar[bool] = False  # True: input is (B, T, 1 + P, W) patch tokens (TS2-Net)
    multi_vector: ClassVar[bool] = False  # True: embed_video gives (B, K, D), the text takes its best vector

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.provenance: dict | None = None  # how it was trained (data, encoder, frame plan); saved as "training"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))
            self.build()

    def build(self) -> None:
        """Create the head's layers (called under a seeded RNG)."""

    # --- input checks -------------------------------------------------------------------------------------
    def check_frames(self, frames: torch.Tensor) -> torch.Tensor:
        want = 4 if self.patch_tokens else 3
        if not isinstance(frames, torch.Tensor):
            frames = torch.as_tensor(frames, dtype=torch.float32)
        if frames.dim() != want:
            if self.patch_tokens:
                raise ConfigError(
                    f"video head {self.name!r} needs frame patch tokens (B, T, 1+P, W), got shape "
                    f"{tuple(frames.shape)}; use an encoder that exposes patch tokens (e.g. `tiny`: "
                    "encode_image_tokens; CLIP-style hf: ViTs) or another head (mean, seqtransf, xpool, prototypes)")
            raise ConfigError(
                f"video head {self.name!r} needs frame features (B, T, D), got shape {tuple(frames.shape)}")
        if frames.shape[1] > self.config.max_frames:
            raise ConfigError(
                f"video head {self.name!r}: {frames.shape[1]} frames > max_frames {self.config.max_frames}")
        if not self.patch_tokens and frames.shape[-1] != self.config.dim:
            raise ConfigError(
                f"video head {self.name!r}: frame width {frames.shape[-1]} != config dim {self.config.dim}")
        return frames

    def check_text(self, text: torch.Tensor) -> torch.Tensor:
        if text.dim() != 2 or text.shape[1] != self.config.dim:
            raise ConfigError(
                f"video head {self.name!r}: text must be (B_t, {self.config.dim}), got {tuple(text.shape)}")
        return text

    # --- scoring ------------------------------------------------------------------------------------------
    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(B_v, T, D) -> (B_v, D) L2-normalised (query-independent heads only)."""
        raise ConfigError(f"video head {self.name!r} has no query-independent video embedding; use similarity()")

    def similarity(self, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B_t, D), frames -> (B_t, B_v) cosine similarities."""
        text = F.normalize(self.check_text(text), dim=-1)
        return text @ self.embed_video(frames).T

    def forward(self, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        return self.similarity(text, frames)

    @property
    def index_frames(self) -> int | None:
        """Frames per clip this head needs decoded at index time, when it only ever looks at a fixed number of uniform
        frames (the LEAN student: ``num_frames``); None (default): the index samples its fps grid and the head
        pools what it is given."""
        return None

    @property
    def needs_rescoring(self) -> bool:
        """True when one stored vector per video cannot give the head's exact score (X-Pool's query-dependent
        pooling, several prototypes per video): an index then keeps the frame features and re-scores candidates."""
        return not self.query_independent or self.multi_vector

    def subsample(self, frames):
        """Uniformly keep ``config.num_frames`` of the T frames (axis 0 of a (T, ...) array or tensor; axis 1 of a
        (B, T, ...) tensor is not handled here). Fewer frames are returned unchanged."""
        t = frames.shape[0]
        n = self.config.num_frames
        if t <= n:
            return frames
        idx = ((torch.arange(n, dtype=torch.float64) + 0.5) * t / n).floor().long().clamp(max=t - 1)
        return frames[idx] if isinstance(frames, torch.Tensor) else frames[idx.numpy()]

    def as_pool(self) -> Callable:
        """Adapter for :func:`xmr.video.embed_video`'s ``pool(frame_feats (T, ...), times) -> (D,)``: the
        head's video embedding of the uniformly subsampled frames (``num_frames``)."""
        if not self.query_independent or self.multi_vector:
            raise ConfigError(f"video head {self.name!r} cannot pool frame features into one index vector; "
                              "use candidate_pool() and re-score with score_frames()")
        return self.candidate_pool()  # for these heads the candidate embedding is embed_video itself

    def candidate_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, D) L2-normalised query-independent vectors for first-stage retrieval: the head's own
        embedding when it has one; the mean of the prototypes for multi-vector heads; meanP (mean of the
        L2-normalised frames) for query-dependent heads unless they override this (X-Pool does)."""
        if self.multi_vector:
            return F.normalize(self.embed_video(frames).mean(dim=1), dim=-1)
        if not self.query_independent:
            return F.normalize(F.normalize(self.check_frames(frames), dim=-1).mean(dim=1), dim=-1)
        return self.embed_video(frames)

    def candidate_pool(self) -> Callable:
        """:meth:`candidate_embedding` as an index pool ``pool(frame_feats (T, D), times) -> (D,)`` (frames
        subsampled to ``num_frames``)."""

        def pool(frame_feats, times=None):
            import numpy as np

            with torch.no_grad():
                x = torch.as_tensor(np.asarray(self.subsample(frame_feats), dtype=np.float32))[None]
                return self.candidate_embedding(x.to(self.logit_scale.device))[0].cpu().numpy()

        return pool

    @torch.no_grad()
    def score_frames(self, query, frame_sets):
        """Exact scores of one query vector (D,) against several frame sets, each (T_i, D) (a video, or the frames of
        each of its segments) -> (n,) float32 cosine similarities. Each set is subsampled to ``num_frames``; sets with
        the same length are scored in one batch."""
        import numpy as np

        dev = self.logit_scale.device
        q = torch.as_tensor(np.asarray(query, dtype=np.float32)).reshape(1, -1).to(dev)
        out = np.zeros(len(frame_sets), dtype=np.float32)
        groups: dict[int, list[int]] = {}
        sets = [self.subsample(np.asarray(f, dtype=np.float32)) for f in frame_sets]
        for i, f in enumerate(sets):
            groups.setdefault(len(f), []).append(i)
        for idx in groups.values():
            batch = torch.from_numpy(np.stack([sets[i] for i in idx])).to(dev)
            out[idx] = self.similarity(q, batch)[0].cpu().numpy()
        return out

    # --- persistence --------------------------------------------------------------------------------------
    def save(self, directory: str | Path, training: dict | None = None) -> Path:
        """Write ``config.json`` ({"model": "xmr-video-head", "head": name, ...config[, "training": {...}]}) and
        ``model.safetensors``. ``training``: provenance (data, encoder, frame plan), kept in ``self.provenance``."""
        if training is not None:
            self.provenance = training
        extra = {"training": self.provenance} if self.provenance else None
        return save_checkpoint(directory, _FORMAT, {"head": self.name, **asdict(self.config)}, self, extra=extra,
                               metadata={"head": self.name})


def load_head(directory: str | Path) -> VideoHead:
    from . import VIDEO_HEADS

    ckpt = load_checkpoint(directory, _FORMAT, f"video head {directory}", what="video-head config",
                           hint="train one with `xmr train-head` or save one with head.save(dir)")
    name = ckpt.config.pop("head", None)
    if not isinstance(name, str):
        raise ConfigError(f"video head {directory}: config.json 'head' must be a head name (a string), got "
                          f"{type(name).__name__}")
    cls = VIDEO_HEADS.get(name)
    provenance = ckpt.config.pop("training", None)
    head = ckpt.load_into(cls(cls.Config.coerce(ckpt.config))).eval()
    head.provenance = provenance
    return head
