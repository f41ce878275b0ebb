"""``video:<image spec>+<head>[@DIR]``: an image encoder lifted to video by a temporal head.

Examples: ``video:concept+mean`` (CLIP4Clip meanP, no weights), ``video:tiny+seqtransf@heads/seq`` (a head trained
with ``xmr train-head --encoder tiny --head seqtransf --out heads/seq``). Texts and images go through the image
encoder unchanged; videos are sampled into frames, encoded by the image tower and pooled by the head
(``video_pool``, used by ``xmr index`` and ``xmr eval``). Only heads whose video embedding does not depend on the
query and that pool frame embeddings can make index vectors: X-Pool (query-dependent), TS2-Net (patch tokens) and
prototypes (several vectors per video) are refused with the reason.

The head package is imported when such a spec is created, never by ``import xmr.encoders``.
"""
from __future__ import annotations

from PIL import Image

from ..errors import ConfigError
from . import ENCODERS
from .base import Encoder, l2_normalize


class VideoEncoder(Encoder):
    def __init__(self, base: Encoder, head, head_dir: str | None):
        self.base = base
        self.head = head.eval()
        self.head_dir = head_dir
        self.device = base.device
        self.dim = base.dim
        pool = head.as_pool()  # raises for heads that cannot make one query-independent vector
        # index/eval contract: pool(frame_embs (T, D), times (T,)) -> (D,) L2-normalised
        self.video_pool = lambda embs, times: l2_normalize(pool(embs, times)[None])[0]

    def _encode_text_batch(self, texts: list[str]):
        return self.base._encode_text_batch(texts)

    def _encode_image_batch(self, images: list[Image.Image]):
        return self.base._encode_image_batch(images)

    def describe(self) -> dict:
        from dataclasses import asdict

        return {**super().describe(), "image_encoder": self.base.describe(), "head": self.head.name,
                "head_dir": self.head_dir, "head_config": asdict(self.head.config)}


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
    if head_dir is None:
        if head_name != "mean":
            raise ConfigError(f"head {head_name!r} has trained weights: give them as video:{base_spec}+{head_name}@DIR "
                              f"(train with: xmr train-head --encoder {base_spec} --head {head_name} --out DIR)")
        head = create_head("mean", dim=base.dim)
    else:
        head = load_head(head_dir)
        if head.name != head_name:
            raise ConfigError(f"{head_dir} holds a {head.name!r} head, not {head_name!r}")
        if head.config.dim != base.dim:
            raise ConfigError(f"head in {head_dir} has dim {head.config.dim} but {base_spec} gives {base.dim}: "
                              "train the head on this encoder's features")
    return VideoEncoder(base, head.to(base.device), head_dir)
