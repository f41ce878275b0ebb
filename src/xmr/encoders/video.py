"""``video:<image spec>+<head>[@DIR]``: an image encoder lifted to video by a temporal head.

Examples: ``video:concept+mean`` (CLIP4Clip meanP, no weights), ``video:tiny+seqtransf@heads/seq`` (a head trained
with ``xmr train-head --encoder tiny --head seqtransf --out heads/seq``). Texts and images go through the image
encoder unchanged; videos are sampled into frames, each frame is encoded by the image tower (:meth:`encode_frames`:
L2-normalised embeddings, or patch tokens for ``ts2net``), and the head pools them.

Every head works in ``xmr index`` / ``xmr search`` / ``xmr eval``:

* query-independent single-vector heads (``mean``, ``seqtransf``, ``ts2net``): ``video_pool`` gives the stored
  video and segment vectors; search is one inner product, as for images;
* heads that need re-scoring (``xpool``: the video embedding depends on the text; ``prototypes``: several vectors
  per video) store a query-independent candidate vector (X-Pool with uniform attention, the mean of the prototypes) plus the
  frame embeddings (``keep_frames``); :meth:`video_rescorer` re-scores the top candidates of a query exactly with the
  head (the video and each of its segments), see :class:`VideoRescorer`.

The head package is imported when such a spec is created, never by ``import xmr.encoders``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from ..errors import ConfigError
from . import ENCODERS
from .base import Encoder, l2_normalize

#: default first-stage pool re-scored by a head that needs re-scoring (xmr search --candidates)
DEFAULT_CANDIDATES = 100


class VideoEncoder(Encoder):
    def __init__(self, base: Encoder, head, head_dir: str | None):
        self.base = base
        self.head = head.eval()
        self.head_dir = head_dir
        self.device = base.device
        self.dim = base.dim
        if head.patch_tokens:
            if not base.capabilities.patch_tokens:
                if base.spec.startswith("hf:"):
                    base.token_width  # raises the model-specific reason (SigLIP / ALIGN: no class token)
                raise ConfigError(f"head {head.name!r} needs patch tokens, which {base.spec!r} does not expose "
                                  "(encoders with patch tokens: tiny, hf: CLIP-style ViTs); use mean, seqtransf, "
                                  "xpool or prototypes with this encoder")
            width = base.token_width
            if width != head.config.width:
                raise ConfigError(f"head {head.name!r} expects tokens of width {head.config.width} but {base.spec!r} "
                                  f"gives {width}: train the head on this encoder's tokens")
        if head.config.dim != base.dim:
            raise ConfigError(f"head in {head_dir} has dim {head.config.dim} but {base.spec} gives {base.dim}: "
                              "train the head on this encoder's features")
        #: video: frames are pooled by the head; video_rescoring: the index keeps frame embeddings and search
        #: re-scores candidates with the head (X-Pool, prototypes)
        #: (token outputs stay with the image tower: ``self.base``)
        self.capabilities = replace(base.capabilities, patch_tokens=False, text_tokens=False, video=True,
                                    video_rescoring=head.needs_rescoring, video_frames=head.index_frames)
        pool = head.candidate_pool() if head.needs_rescoring else head.as_pool()
        # index/eval contract: pool(frame_feats (T, ...), times (T,)) -> (D,) L2-normalised
        self.video_pool = lambda feats, times: l2_normalize(pool(feats, times)[None])[0]

    def _encode_text_batch(self, texts: list[str]):
        return self.base._encode_text_batch(texts)

    def _encode_image_batch(self, images: list[Image.Image]):
        return self.base._encode_image_batch(images)

    def encode_frames(self, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Frames -> what the head takes: (N, D) L2-normalised embeddings, or (N, 1 + P, W) patch tokens."""
        if self.head.patch_tokens:
            out = [self.base.encode_image_tokens(images[s: s + batch_size]).float().cpu().numpy()
                   for s in range(0, len(images), batch_size)]
            return np.concatenate(out)
        return self.base.encode_images(images, batch_size=batch_size, show_progress=False)

    def video_rescorer(self, candidates: int | None = None) -> "VideoRescorer | None":
        """The search-time re-scorer for heads that need one (None otherwise)."""
        if not self.capabilities.video_rescoring:
            return None
        return VideoRescorer(self.head, DEFAULT_CANDIDATES if candidates is None else int(candidates))

    def describe(self) -> dict:
        from dataclasses import asdict

        return {**super().describe(), "image_encoder": self.base.describe(), "head": self.head.name,
                "head_dir": self.head_dir, "head_config": asdict(self.head.config)}


@dataclass
class VideoRescorer:
    """Exact head scores for the candidate videos of one query (used by the ``head`` stage, :mod:`xmr.retrieval.stages.head`).

    ``candidates``: how many first-stage results (by the stored candidate vectors, images included) are re-scored.
    A video outside them is not found even if its exact score would be high: that is the two-stage trade-off
    (docs/video_heads.md measures how often the exhaustive top-k is kept)."""

    head: object
    candidates: int = DEFAULT_CANDIDATES

    def __post_init__(self):
        if self.candidates < 1:
            raise ConfigError(f"candidates must be >= 1, got {self.candidates}")

    def score(self, query: np.ndarray, times: np.ndarray, feats: np.ndarray,
              windows: list[tuple[float, float]]) -> tuple[float, list[float | None]]:
        """(score of the whole video, score of each window or None when no stored frame falls in it)."""
        sets, where = [feats], []
        for s, e in windows:
            m = (times >= s) & (times < e)  # the rule embed_video used to build the segment
            where.append(len(sets) if m.any() else None)
            if m.any():
                sets.append(feats[m])
        sc = self.head.score_frames(query, sets)
        return float(sc[0]), [None if j is None else float(sc[j]) for j in where]


def parse_video_arg(arg: str | None) -> tuple[str, str, str | None]:
    """``"hf:/m+seqtransf@/h"`` -> ``("hf:/m", "seqtransf", "/h")``."""
    usage = "video spec is video:<image spec>+<head>[@DIR], e.g. video:concept+mean or video:tiny+seqtransf@heads/seq"
    if not arg or "+" not in arg:
        raise ConfigError(usage)
    rest, sep, head_dir = arg.rpartition("@") if "@" in arg.rsplit("+", 1)[1] else (arg, "", "")
    base_spec, _, head_name = rest.rpartition("+")
    if not base_spec or not head_name or (sep and not head_dir):
        raise ConfigError(usage)
    return base_spec, head_name, head_dir or None


@ENCODERS.register("video", help="image encoder + temporal head for videos: video:<spec>+<head>[@DIR] (docs/video_heads.md)")
def _make_video(arg: str | None, device: str | None = None) -> VideoEncoder:
    from ..heads import create_head, load_head
    from . import create_encoder

    base_spec, head_name, head_dir = parse_video_arg(arg)
    if base_spec.startswith("video:"):
        raise ConfigError("a video encoder cannot wrap another video encoder")
    base = create_encoder(base_spec, device=device)
    from ..heads import list_heads

    known = sorted(name for name, _ in list_heads())  # loads the head modules (the registry fills on import)
    if head_name not in known:
        raise ConfigError(f"unknown video head {head_name!r}; known: {', '.join(known)}")
    if head_dir is None:
        if head_name != "mean":
            raise ConfigError(f"head {head_name!r} has trained weights: give them as video:{base_spec}+{head_name}@DIR "
                              f"(train with: xmr train-head --encoder {base_spec} --head {head_name} --out DIR)")
        head = create_head("mean", dim=base.dim)
    else:
        head = load_head(head_dir)
        if head.name != head_name:
            raise ConfigError(f"{head_dir} holds a {head.name!r} head, not {head_name!r}")
    return VideoEncoder(base, head.to(base.device), head_dir)
