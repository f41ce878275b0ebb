"""Synthetic data generators (no downloads): :mod:`xmr.synth.videos` — coloured-shape clips with captions about
transient content, temporal order and motion direction."""
from __future__ import annotations

from .videos import SynthVideoConfig, generate_videos

__all__ = ["SynthVideoConfig", "generate_videos"]
