"""Synthetic per-frame video features with class labels, for video hashing and video-head experiments.

A class is a sequence of ``events`` prototype vectors (an activity's phases); a video of that class walks through
its class's phases in order (each phase a random share of the frames), with a video-specific offset (camera,
scene) and per-frame noise. Videos of one class share phases but not timing or scene, so a good video code must
keep the class and drop the nuisance. Deterministic for a seed; numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class FrameFeatureWorld:
    frames: np.ndarray  # (N, T, D) float32
    labels: np.ndarray  # (N,) int class of each video


def frame_feature_world(num_videos: int, *, num_classes: int = 20, num_frames: int = 25, dim: int = 64,
                        events: int = 3, scene: float = 0.8, noise: float = 0.5, seed: int = 0) -> FrameFeatureWorld:
    if min(num_videos, num_classes, num_frames, dim, events) < 1 or num_frames < events:
        raise ConfigError("frame_feature_world needs positive sizes and num_frames >= events")
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(num_classes, events, dim)) / np.sqrt(dim)
    labels = rng.integers(0, num_classes, size=num_videos)
    out = np.empty((num_videos, num_frames, dim), dtype=np.float32)
    for v in range(num_videos):
        cuts = np.sort(rng.choice(np.arange(1, num_frames), size=events - 1, replace=False))
        phase = np.searchsorted(cuts, np.arange(num_frames), side="right")
        offset = scene * rng.normal(size=dim) / np.sqrt(dim)
        out[v] = protos[labels[v], phase] + offset + noise * rng.normal(size=(num_frames, dim)) / np.sqrt(dim)
    return FrameFeatureWorld(frames=out, labels=labels)
