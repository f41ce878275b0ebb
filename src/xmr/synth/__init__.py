"""Synthetic data generators (no downloads): :mod:`xmr.synth.videos` — coloured-shape clips with captions about
transient content, temporal order and motion direction; :mod:`xmr.synth.images` — coloured-shape images with
several true captions each, and recorded corruptions (swapped captions, partial captions, wrong class labels)."""
from __future__ import annotations

from .images import SynthImageConfig, generate_images
from .videos import SynthVideoConfig, generate_videos

__all__ = ["SynthImageConfig", "SynthVideoConfig", "generate_images", "generate_videos"]
