"""Moved to :mod:`xmr.video.features` (one frames -> features path); this shim goes once eval/runner.py and the
benchmarks import from :mod:`xmr.video`."""
from ..video.features import frame_features, frame_tokens, item_frames

__all__ = ["item_frames", "frame_features", "frame_tokens"]
