"""Boolean pixel masks of the synthetic shapes, shared by ``xmr synth images`` and ``xmr synth videos``."""
from __future__ import annotations

import numpy as np


def shape_mask(shape: str, cx: float, cy: float, r: float, size: int, triangle_slope: float) -> np.ndarray:
    """(size, size) mask of a circle, a square (half-side 0.85 r) or an upward triangle centred at (cx, cy);
    ``triangle_slope`` is the half-width gained per pixel down from the apex (each generator keeps its own)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    # triangle pointing up: inside the band below the two slanted edges and above the base
    return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * triangle_slope)
