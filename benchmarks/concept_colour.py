"""Colour-name features for the ``concept`` model: how much of each basic colour an image shows, and where.

ImageNet's classes do not say "red", "white" or "snowy", yet everyday captions do ("a man in a red shirt", "a black
dog runs through the snow"). These features give the learned adapter (:mod:`.concept_adapter`) something to link
those words to, at almost no cost (a few hundred microseconds per image, no network).

Each pixel gets one of the 11 basic colour terms of Berlin & Kay (black, white, grey, red, orange, yellow, green,
blue, purple, pink, brown), the vocabulary of van de Weijer et al., "Learning Color Names for Real-World
Applications" (IEEE TIP 2009). Deviation: van de Weijer et al. learn a 32x32x32 RGB -> colour-name table from Google
images; that table is not in any installed package, so the assignment here is a fixed rule on HSV (hue sectors,
low-saturation achromatic colours, dark orange = brown, light low-saturation red/magenta = pink), see
:func:`colour_names`. Features: the fraction of pixels of each colour in the whole image, in its top, middle and
bottom thirds (sky, subject, ground) and in its central square (what the photo is of): 5 regions x 11 = 55 numbers,
returned as square roots so each region block is a unit vector (the same Hellinger geometry as the class
probabilities).
"""
from __future__ import annotations

import numpy as np

COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
REGIONS = ("whole", "top", "middle", "bottom", "centre")
NUM_FEATURES = len(COLOURS) * len(REGIONS)


def colour_names(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> (...) int index into :data:`COLOURS` (a fixed HSV rule; see the module docstring)."""
    rgb = np.clip(np.asarray(rgb, np.float32), 0.0, 1.0)
    mx, mn = rgb.max(-1), rgb.min(-1)
    d = mx - mn
    s = np.where(mx > 0, d / np.maximum(mx, 1e-6), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    dd = np.maximum(d, 1e-6)
    h = np.where(mx == r, ((g - b) / dd) % 6.0, np.where(mx == g, (b - r) / dd + 2.0, (r - g) / dd + 4.0)) * 60.0
    out = np.full(rgb.shape[:-1], COLOURS.index("grey"), np.int64)
    chrom = (s >= 0.2) & (mx >= 0.2)
    # chromatic: hue sectors (degrees)
    sector = np.select(
        [(h < 15) | (h >= 330), h < 40, h < 70, h < 165, h < 255, h < 290],
        [COLOURS.index(c) for c in ("red", "orange", "yellow", "green", "blue", "purple")],
        default=COLOURS.index("pink"),  # 290-330: magenta/pink
    )
    brown = ((h < 40) | (h >= 345)) & (mx < 0.6) & (sector != COLOURS.index("pink"))
    pink = (((h < 15) | (h >= 330)) & (s < 0.5) & (mx >= 0.7))
    sector = np.where(brown, COLOURS.index("brown"), np.where(pink, COLOURS.index("pink"), sector))
    out = np.where(chrom, sector, out)
    out = np.where(~chrom & (mx < 0.2), COLOURS.index("black"), out)
    out = np.where(~chrom & (mx >= 0.2) & (s < 0.2) & (mx >= 0.75), COLOURS.index("white"), out)
    return out


def colour_features(rgb: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) RGB in [0, 1] -> (B, 55) float32: per region, sqrt of the fraction of each colour name."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"colour_features expects (B, H, W, 3) RGB, got {rgb.shape}")
    b, hgt, wid = rgb.shape[:3]
    names = colour_names(rgb)  # (B, H, W)
    onehot = np.zeros((b, hgt, wid, len(COLOURS)), np.float32)
    np.put_along_axis(onehot, names[..., None], 1.0, axis=-1)
    t1, t2 = hgt // 3, 2 * hgt // 3
    c0, c1 = hgt // 4, hgt - hgt // 4
    w0, w1 = wid // 4, wid - wid // 4
    regions = [onehot, onehot[:, :t1], onehot[:, t1:t2], onehot[:, t2:], onehot[:, c0:c1, w0:w1]]
    feats = [r.mean(axis=(1, 2)) for r in regions]
    return np.sqrt(np.concatenate(feats, axis=1)).astype(np.float32)


def colour_features_from_views(x: np.ndarray, mean, std) -> np.ndarray:
    """Colour features of normalised model inputs ``x`` (B, 3, H, W) (``(rgb - mean) / std``), subsampled 4x."""
    x = np.asarray(x, np.float32)[:, :, ::4, ::4]
    rgb = x * np.asarray(std, np.float32)[None, :, None, None] + np.asarray(mean, np.float32)[None, :, None, None]
    return colour_features(rgb.transpose(0, 2, 3, 1))
