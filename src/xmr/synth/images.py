"""Synthetic image–caption world for training claims: coloured shapes whose attributes the captions name.

Each image is ``size`` x ``size`` pixels on a dark background and shows ``count`` (1-3) copies of one object kind —
a colour (red, green, blue, yellow), a shape (circle, square, triangle) and a size (small, large) — placed in one
region (left, right, top, bottom). Its **class** is ``"<colour> <shape>"`` (12 classes). Every image gets
``captions_per_image`` true captions from different templates, each naming count, size, colour, shape and region.

Corruptions, applied to the ``train`` split only (so evaluation stays clean), each drawn independently and recorded
per line of the manifest so tests and benchmarks can check what a method did with them:

* ``noise`` (noisy correspondence, NCR's setting): this share of train images get the captions of another image of
  a *different* class -> ``"corrupted": true`` and ``"caption_source"`` (the id whose captions they carry);
* ``partial``: this share of images get captions that name only one or two attributes ("a red shape", "some
  circles") -> ``"partial": true`` (ambiguous: several images fit);
* ``mislabel`` (label noise, MRL's setting): this share of images get a wrong class in ``"label"`` -> ``"mislabelled":
  true``; ``"true_label"`` always holds the drawn class.

Output: ``DIR/images/NNNNN.png``, ``DIR/captions.jsonl`` (one line per image: ``media``, ``captions``, ``split``,
``id``, ``label``, ``true_label``, ``corrupted``, ``caption_source``, ``partial``, ``mislabelled``; readable as
``manifest:DIR/captions.jsonl``) and ``DIR/synth.json`` (the config and the counts of each corruption).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ._shapes import shape_mask

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 240), "yellow": (235, 220, 40)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.08, "large": 0.15}  # radius as a share of the image side
REGIONS = {"left": ((0.05, 0.45), (0.05, 0.95)), "right": ((0.55, 0.95), (0.05, 0.95)),
           "top": ((0.05, 0.95), (0.05, 0.45)), "bottom": ((0.05, 0.95), (0.55, 0.95))}  # (x range, y range)
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
BACKGROUND = 25
CLASSES = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)

_TEMPLATES = (
    "{count} {size} {colour} {shapes} on the {region}",
    "a picture with {count} {size} {colour} {shapes} in the {region}",
    "{count} {colour} {shapes}, {size}, {region} side",
    "on the {region} there {are} {count} {size} {colour} {shapes}",
    "{size} {colour} {shapes} ({count}) at the {region}",
)
_PARTIAL = ("a {colour} shape", "some {shapes}", "{colour} {shapes}", "something on the {region}")


@dataclass(frozen=True)
class SynthImageConfig:
    n: int = 600  # number of images
    seed: int = 0  # the same seed gives the same images, captions and corruptions
    size: int = 64  # image side in pixels
    captions_per_image: int = 3  # true captions per image (distinct templates), at most 5
    test_fraction: float = 0.25  # share of images in the "test" split (never corrupted); the rest is "train"
    noise: float = 0.0  # share of train images whose captions are swapped with another class's image's
    partial: float = 0.0  # share of train images whose captions name only one or two attributes
    mislabel: float = 0.0  # share of train images given a wrong class label

    def __post_init__(self):
        if self.n < 2 or self.size < 24 or not 1 <= self.captions_per_image <= len(_TEMPLATES):
            raise ConfigError(f"SynthImageConfig: need n >= 2, size >= 24, 1 <= captions_per_image <= "
                              f"{len(_TEMPLATES)}: {self}")
        for k in ("test_fraction", "noise", "partial", "mislabel"):
            v = getattr(self, k)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"SynthImageConfig: {k} must be a fraction in [0, 1], got {v}")


def _mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    return shape_mask(shape, cx, cy, r, size, triangle_slope=0.6)


def _draw(colour: str, shape: str, size_word: str, region: str, count: int, size: int, rng) -> np.ndarray:
    img = np.full((size, size, 3), BACKGROUND, np.uint8)
    r = SIZES[size_word] * size
    (x0, x1), (y0, y1) = REGIONS[region]
    lo_x, hi_x = x0 * size + r, x1 * size - r
    lo_y, hi_y = y0 * size + r, y1 * size - r
    placed: list[tuple[float, float]] = []
    for _ in range(count):
        for _attempt in range(50):  # keep copies apart so they can be counted
            cx, cy = rng.uniform(lo_x, max(lo_x, hi_x)), rng.uniform(lo_y, max(lo_y, hi_y))
            if all((cx - px) ** 2 + (cy - py) ** 2 >= (1.6 * r) ** 2 for px, py in placed):
                break
        placed.append((cx, cy))
        img[_mask(shape, cx, cy, r, size)] = COLOURS[colour]
    noise = rng.integers(-8, 9, img.shape)  # a little pixel noise: no two images are identical
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _captions(attrs: dict, k: int, rng, partial: bool) -> list[str]:
    words = {"count": COUNT_WORDS[attrs["count"]], "size": attrs["size"], "colour": attrs["colour"],
             "shapes": attrs["shape"] + ("s" if attrs["count"] > 1 else ""), "region": attrs["region"],
             "are": "are" if attrs["count"] > 1 else "is"}
    pool = _PARTIAL if partial else _TEMPLATES
    order = rng.permutation(len(pool))[: min(k, len(pool))]
    return [pool[i].format(**words) for i in order]


def generate_images(out: str | Path, config: SynthImageConfig | None = None, **overrides) -> Path:
    """Write the set described in the module docstring into ``out`` and return the manifest's path.

    ``out`` may be missing or an empty folder; a folder holding anything else is refused (ConfigError), so
    nothing is overwritten."""
    from PIL import Image

    cfg = config or SynthImageConfig(**overrides)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty folder; give a new --out folder (nothing was written)")
    # separate streams: the same seed gives the same images and true captions whatever the corruption settings,
    # so sets with 0 %, 20 % and 50 % noise differ only in the corrupted pairs
    rng = np.random.default_rng([cfg.seed, 0])  # attributes
    crng = np.random.default_rng([cfg.seed, 1])  # corruptions
    drng = np.random.default_rng([cfg.seed, 2])  # pixels
    trng = np.random.default_rng([cfg.seed, 3])  # caption templates
    n_test = int(round(cfg.n * cfg.test_fraction))
    rows = []
    for i in range(cfg.n):
        attrs = {"colour": str(rng.choice(list(COLOURS))), "shape": str(rng.choice(SHAPES)),
                 "size": str(rng.choice(list(SIZES))), "region": str(rng.choice(list(REGIONS))),
                 "count": int(rng.integers(1, 4))}
        rows.append({"id": f"{i:05d}", "attrs": attrs, "split": "test" if i < n_test else "train",
                     "label": f"{attrs['colour']} {attrs['shape']}"})
    train = [r for r in rows if r["split"] == "train"]
    # corruptions, each an independent draw over the train images
    noisy = {r["id"] for r in train if crng.random() < cfg.noise}
    partial = {r["id"] for r in train if crng.random() < cfg.partial}
    mislabel = {r["id"] for r in train if crng.random() < cfg.mislabel}
    (out / "images").mkdir(parents=True, exist_ok=True)
    captions = {}
    for r in rows:
        full = _captions(r["attrs"], cfg.captions_per_image, trng, False)  # drawn for every image (same stream)
        captions[r["id"]] = _captions(r["attrs"], cfg.captions_per_image, crng, True) if r["id"] in partial else full
    by_id = {r["id"]: r for r in rows}
    lines = []
    for r in rows:
        a = r["attrs"]
        Image.fromarray(_draw(a["colour"], a["shape"], a["size"], a["region"], a["count"], cfg.size, drng)).save(
            out / "images" / f"{r['id']}.png")
        source = r["id"]
        if r["id"] in noisy:  # captions of a train image of another class
            others = [t["id"] for t in train if t["label"] != r["label"]]
            source = str(crng.choice(others))
        label = r["label"]
        if r["id"] in mislabel:
            label = str(crng.choice([c for c in CLASSES if c != r["label"]]))
        lines.append({"media": f"images/{r['id']}.png", "captions": captions[source], "split": r["split"],
                      "id": r["id"], "label": label, "true_label": by_id[r["id"]]["label"], **a,
                      "corrupted": source != r["id"], "caption_source": source, "partial": r["id"] in partial,
                      "mislabelled": label != r["label"]})
    manifest = out / "captions.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    summary = {"config": asdict(cfg), "images": cfg.n, "train": len(train), "test": n_test,
               "corrupted": sum(x["corrupted"] for x in lines), "partial": len(partial),
               "mislabelled": sum(x["mislabelled"] for x in lines), "classes": list(CLASSES)}
    (out / "synth.json").write_text(json.dumps(summary, indent=2) + "\n")
    return manifest


__all__ = ["CLASSES", "SynthImageConfig", "generate_images"]
