"""Moved to :mod:`xmr.video` (one frames -> features path); this shim goes once eval/runner.py imports from
:mod:`xmr.video`."""
from ..video import VideoEmbedding, VideoIndexConfig, embed_video, mean_pool, segment_windows

__all__ = ["VideoIndexConfig", "VideoEmbedding", "embed_video", "mean_pool", "segment_windows"]
