"""Synthetic composed-retrieval world (``xmr synth edits``): images of one coloured shape and (reference, modification
text, target) triplets whose two images differ in exactly one named attribute.

Each image shows one shape with a colour (red, green, blue, yellow), a shape (circle, square, triangle), a size
(small, large) and a region (left, right, top, bottom) -- the drawing of :mod:`xmr.synth.images` -- at a random
place inside its region, with a little pixel noise, so several images share one attribute combination. An image's
description names all four ("a small red circle on the left").

A triplet changes one attribute of its reference; the modification text says which, from templates:
"make it red", "change the circle to a square", "make it larger", "move it to the top", ...

**Held-out combinations.** ``held_out`` (colour, shape) pairs (drawn with the seed, recorded in ``synth.json``)
never appear in the train split: every image of such a pair is a test image, and every test triplet's *target*
has a held-out pair, so a method must compose attributes it has seen only apart ("red" seen on circles,
"square" seen in green, never a red square). Test references are test images of any pair.

Output: ``DIR/images/NNNNN.png``; ``DIR/images.jsonl`` (one line per image: ``id``, ``media``, ``split``,
``colour``, ``shape``, ``size``, ``region``, ``description``); ``DIR/edits.jsonl`` (one line per triplet:
``split``, ``reference``, ``target`` (image ids), ``text``, ``attribute`` (the one changed), ``targets`` (every
image id of the split with the target's attributes: all count as correct)); ``DIR/synth.json`` (config, held-out
pairs, counts). Loads as ``edits:DIR`` (:func:`xmr.data.composed.load_composed`).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .images import COLOURS, REGIONS, SHAPES, SIZES, _draw

ATTRIBUTES = ("colour", "shape", "size", "region")
_COLOUR_TEXT = ("make it {new}", "change the colour to {new}", "i want it {new} instead of {old}",
                "same but {new}")
_SHAPE_TEXT = ("change the {old} to a {new}", "make it a {new}", "a {new} instead", "same colour but a {new}")
_SIZE_TEXT = {"large": ("make it larger", "a bigger one", "increase the size"),
              "small": ("make it smaller", "a smaller one", "reduce the size")}
_REGION_TEXT = ("move it to the {new}", "put it on the {new}", "same thing on the {new}")


@dataclass(frozen=True)
class SynthEditsConfig:
    n: int = 800  # number of images
    seed: int = 0  # the same seed gives the same images, held-out pairs and triplets
    size: int = 64  # image side in pixels
    held_out: int = 3  # (colour, shape) pairs kept out of the train split (of 12)
    triplets_per_image: int = 2  # triplets drawn per train image as reference
    test_queries: int = 300  # test triplets (targets with a held-out pair)

    def __post_init__(self):
        if self.n < 20 or self.size < 24:
            raise ConfigError(f"SynthEditsConfig: need n >= 20 and size >= 24: {self}")
        if not 1 <= self.held_out <= len(COLOURS) * len(SHAPES) - 2:
            raise ConfigError(f"SynthEditsConfig: held_out must be 1..{len(COLOURS) * len(SHAPES) - 2}, "
                              f"got {self.held_out}")
        if self.triplets_per_image < 1 or self.test_queries < 1:
            raise ConfigError(f"SynthEditsConfig: triplets_per_image and test_queries must be >= 1: {self}")


def describe(a: dict) -> str:
    return f"a {a['size']} {a['colour']} {a['shape']} on the {a['region']}"


def modification_text(attribute: str, old: str, new: str, rng) -> str:
    """The modification text of changing ``attribute`` from ``old`` to ``new`` (one template drawn with ``rng``)."""
    if attribute == "colour":
        pool = _COLOUR_TEXT
    elif attribute == "shape":
        pool = _SHAPE_TEXT
    elif attribute == "size":
        pool = _SIZE_TEXT[new]
    elif attribute == "region":
        pool = _REGION_TEXT
    else:
        raise ConfigError(f"unknown attribute {attribute!r}; one of {ATTRIBUTES}")
    return pool[int(rng.integers(len(pool)))].format(old=old, new=new)


_VALUES = {"colour": tuple(COLOURS), "shape": SHAPES, "size": tuple(SIZES), "region": tuple(REGIONS)}


def _key(a: dict) -> tuple:
    return tuple(a[k] for k in ATTRIBUTES)


def generate_edits(out: str | Path, config: SynthEditsConfig | None = None, **overrides) -> Path:
    """Write the set described in the module docstring into ``out`` (missing or empty) and return
    ``out/edits.jsonl``."""
    from PIL import Image

    cfg = config or SynthEditsConfig(**overrides)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty folder; give a new --out folder (nothing was written)")
    rng = np.random.default_rng([cfg.seed, 10])  # attributes and held-out pairs
    drng = np.random.default_rng([cfg.seed, 11])  # pixels
    trng = np.random.default_rng([cfg.seed, 12])  # triplets and texts
    pairs = list(itertools.product(COLOURS, SHAPES))
    held = {pairs[i] for i in rng.permutation(len(pairs))[: cfg.held_out]}
    images = []
    for i in range(cfg.n):
        a = {k: str(rng.choice(_VALUES[k])) for k in ATTRIBUTES}
        images.append({"id": f"{i:05d}", "media": f"images/{i:05d}.png", **a, "description": describe(a)})
    # split: every held-out-pair image is test; a quarter of the others too (references and distractors)
    for im in images:
        im["split"] = "test" if (im["colour"], im["shape"]) in held or rng.random() < 0.25 else "train"
    by_split: dict[str, dict[tuple, list[str]]] = {"train": {}, "test": {}}
    for im in images:
        by_split[im["split"]].setdefault(_key(im), []).append(im["id"])

    def triplet(ref: dict, split: str, want_held: bool):
        """One edit of ``ref`` to an existing image of ``split`` (None when no change has one)."""
        options = []
        for attribute in ATTRIBUTES:
            for new in _VALUES[attribute]:
                if new == ref[attribute]:
                    continue
                t = {**{k: ref[k] for k in ATTRIBUTES}, attribute: new}
                if ((t["colour"], t["shape"]) in held) != want_held:
                    continue
                if _key(t) in by_split[split]:
                    options.append((attribute, new, t))
        if not options:
            return None
        attribute, new, t = options[int(trng.integers(len(options)))]
        ids = by_split[split][_key(t)]
        ids = [x for x in ids if x != ref["id"]] or ids
        target = str(trng.choice(ids))
        return {"split": split, "reference": ref["id"], "target": target,
                "text": modification_text(attribute, ref[attribute], new, trng), "attribute": attribute,
                "targets": sorted(x for x in by_split[split][_key(t)] if x != ref["id"])}

    edits = []
    for im in images:
        if im["split"] == "train":
            for _ in range(cfg.triplets_per_image):
                e = triplet(im, "train", False)
                if e is not None:
                    edits.append(e)
    test_refs = [im for im in images if im["split"] == "test"]
    tries = 0
    n_test = 0
    while n_test < cfg.test_queries and tries < 20 * cfg.test_queries and test_refs:
        tries += 1
        e = triplet(test_refs[int(trng.integers(len(test_refs)))], "test", True)
        if e is not None and e["targets"]:
            edits.append(e)
            n_test += 1
    if n_test == 0 or not any(e["split"] == "train" for e in edits):
        raise ConfigError(f"SynthEditsConfig {cfg}: too few images to form train and test triplets; raise n")
    (out / "images").mkdir(parents=True, exist_ok=True)
    for im in images:
        Image.fromarray(_draw(im["colour"], im["shape"], im["size"], im["region"], 1, cfg.size, drng)).save(
            out / im["media"])
    (out / "images.jsonl").write_text("".join(json.dumps(im) + "\n" for im in images))
    manifest = out / "edits.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in edits))
    summary = {"config": asdict(cfg), "images": cfg.n, "held_out": sorted(f"{c} {s}" for c, s in held),
               "train_images": sum(im["split"] == "train" for im in images),
               "test_images": sum(im["split"] == "test" for im in images),
               "train_triplets": sum(e["split"] == "train" for e in edits), "test_triplets": n_test}
    (out / "synth.json").write_text(json.dumps(summary, indent=2) + "\n")
    return manifest


__all__ = ["ATTRIBUTES", "SynthEditsConfig", "describe", "generate_edits", "modification_text"]
