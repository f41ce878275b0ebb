"""Synthetic images with rendered text, for scene-text retrieval (``xmr synth text-images``).

Each image (``size`` x ``size``) shows one coloured shape on a plain background (the visual content) and one or
two words from :data:`WORDS` rendered on a sign: a random font among PIL's default font and every TrueType font
found on the system (:func:`available_fonts`), a random size, colour and angle (``max_angle`` degrees either way).
Each image's words are distinct from every other image's (``n`` is at most ``len(WORDS)`` for one word each), so
"the image whose sign says X" has exactly one right answer.

Captions name the words (``a sign that says "BAKERY"``) and, in a second caption, the shape as well. Output:
``DIR/images/NNNNN.png``, ``DIR/captions.jsonl`` (``media``, ``captions``, ``words``, ``font``, ``font_size``,
``angle``, ``colour``, ``shape``, ``split``: readable as ``manifest:DIR/captions.jsonl``) and ``DIR/synth.json``.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ._shapes import shape_mask

WORDS = (
    "BAKERY", "EXIT", "PHARMACY", "HOTEL", "TAXI", "MUSEUM", "LIBRARY", "GARAGE", "HARBOR", "CINEMA", "STATION",
    "MARKET", "GARDEN", "TEMPLE", "CASTLE", "BRIDGE", "TUNNEL", "AIRPORT", "SCHOOL", "CHURCH", "BANK", "POLICE",
    "FIRE", "DANGER", "STOP", "OPEN", "CLOSED", "SALE", "COFFEE", "PIZZA", "SUSHI", "BURGER", "NOODLES", "FLOWERS",
    "BOOKS", "TOYS", "SHOES", "JEWELRY", "BARBER", "DENTIST", "DOCTOR", "CLINIC", "HOSPITAL", "PARKING", "TOILET",
    "ENTRANCE", "ELEVATOR", "STAIRS", "OFFICE", "FACTORY", "FARM", "ZOO", "BEACH", "MOUNTAIN", "RIVER", "FOREST",
    "DESERT", "ISLAND", "VALLEY", "CANYON", "GALAXY", "PLANET", "ROCKET", "ROBOT", "DRAGON", "TIGER", "ZEBRA",
    "GIRAFFE", "PENGUIN", "DOLPHIN", "WHALE", "EAGLE", "FALCON", "OWL", "PARROT", "RABBIT", "SQUIRREL", "BEAVER",
    "MOOSE", "BISON", "CAMEL", "KOALA", "PANDA", "LEMON", "MANGO", "CHERRY", "PEACH", "PLUM", "OLIVE", "GARLIC",
    "PEPPER", "TOMATO", "POTATO", "CARROT", "ONION", "VIOLIN", "GUITAR", "PIANO", "TRUMPET", "DRUMS", "JAZZ",
    "OPERA", "BALLET", "THEATER", "CIRCUS", "STADIUM", "HOCKEY", "TENNIS", "SOCCER", "RUGBY", "GOLF", "CHESS",
    "POKER", "CASINO", "LOTTERY", "WINTER", "SUMMER", "AUTUMN", "SPRING", "MONDAY", "FRIDAY", "NORTH", "SOUTH",
    "EAST", "WEST", "SILVER", "GOLD", "COPPER", "MARBLE", "VELVET", "COTTON", "SILK", "WOOL",
)
COLOURS = {"red": (220, 50, 50), "green": (50, 170, 70), "blue": (50, 90, 220), "yellow": (230, 200, 40),
           "purple": (140, 60, 170), "orange": (240, 140, 30)}
SHAPES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class TextImageConfig:
    n: int = 60  # images
    seed: int = 0
    size: int = 320  # image side, pixels
    words_per_image: int = 1  # 1 or 2
    min_font: int = 22  # font size range, pixels
    max_font: int = 44
    max_angle: float = 15.0  # text rotated uniformly in [-max_angle, max_angle] degrees
    test_fraction: float = 1.0  # every image is a test query target by default (retrieval by the words)

    def __post_init__(self):
        if self.words_per_image not in (1, 2):
            raise ConfigError(f"words_per_image must be 1 or 2, got {self.words_per_image}")
        if not 1 <= self.n * self.words_per_image <= len(WORDS):
            raise ConfigError(f"text-images: n x words per image must be 1..{len(WORDS)} (distinct words), got "
                              f"{self.n} x {self.words_per_image}")
        if not 64 <= self.size <= 2048:
            raise ConfigError(f"text-images: size must be 64..2048 pixels, got {self.size}")
        if not 6 <= self.min_font <= self.max_font:
            raise ConfigError(f"font sizes must satisfy 6 <= min_font <= max_font, got {self.min_font}, "
                              f"{self.max_font}")
        if not 0 <= self.max_angle <= 90:
            raise ConfigError(f"max_angle must be within 0..90 degrees, got {self.max_angle}")


def available_fonts() -> list[str]:
    """``"default"`` (PIL's bundled font) plus every TrueType font under the usual system font folders, sorted."""
    found = set()
    for root in ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts"),
                 "/Library/Fonts", "/System/Library/Fonts", "C:/Windows/Fonts"):
        found.update(glob.glob(os.path.join(root, "**", "*.ttf"), recursive=True))
    return ["default"] + sorted(found)


def _font(name: str, size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size) if name == "default" else ImageFont.truetype(name, size)


def render_text_image(words: list[str], *, size: int, font: str, font_size: int, angle: float, colour: str,
                      shape: str, rng) -> "object":
    """One PIL RGB image: a shape on a light background and ``words`` on a sign, rotated by ``angle``."""
    from PIL import Image, ImageDraw

    bg = tuple(int(x) for x in rng.integers(200, 246, 3))
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = bg
    r = size * 0.12
    cx, cy = size * float(rng.uniform(0.2, 0.8)), size * float(rng.uniform(0.62, 0.8))
    canvas[shape_mask(shape, cx, cy, r, size, 0.9)] = COLOURS[colour]
    im = Image.fromarray(canvas)
    text = " ".join(words)
    f = _font(font, font_size)
    box = ImageDraw.Draw(im).textbbox((0, 0), text, font=f)
    w, h = box[2] - box[0] + 16, box[3] - box[1] + 16
    ink = tuple(int(x) for x in rng.integers(0, 70, 3))
    sign = Image.new("RGBA", (w, h), (255, 255, 255, 235))
    ImageDraw.Draw(sign).text((8 - box[0], 8 - box[1]), text, font=f, fill=(*ink, 255))
    sign = sign.rotate(angle, expand=True, resample=Image.BICUBIC)
    if sign.width > size or sign.height > size * 0.55:
        sign.thumbnail((size - 4, int(size * 0.55)))
    x = int(rng.integers(0, max(1, size - sign.width)))
    y = int(rng.integers(0, max(1, int(size * 0.55) - sign.height)))
    im.paste(sign, (x, y), sign)
    return im


def generate_text_images(out: str | Path, config: TextImageConfig | None = None, **overrides) -> Path:
    """Write the set described in the module docstring into ``out`` (missing or empty) and return the manifest."""
    cfg = config or TextImageConfig(**overrides)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty folder; give a new --out folder (nothing was written)")
    rng = np.random.default_rng([cfg.seed, 7])
    fonts = available_fonts()
    words = [str(w) for w in rng.permutation(WORDS)[: cfg.n * cfg.words_per_image]]
    n_test = int(round(cfg.n * cfg.test_fraction))
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(cfg.n):
        ws = words[i * cfg.words_per_image : (i + 1) * cfg.words_per_image]
        font = fonts[int(rng.integers(len(fonts)))]
        fs = int(rng.integers(cfg.min_font, cfg.max_font + 1))
        angle = float(np.round(rng.uniform(-cfg.max_angle, cfg.max_angle), 1))
        colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
        im = render_text_image(ws, size=cfg.size, font=font, font_size=fs, angle=angle, colour=colour, shape=shape,
                               rng=rng)
        im.save(out / "images" / f"{i:05d}.png")
        said = " ".join(ws)
        lines.append({"media": f"images/{i:05d}.png", "id": f"{i:05d}", "split": "test" if i < n_test else "train",
                      "captions": [f'a sign that says "{said}"', f"a {colour} {shape} under a sign reading {said}"],
                      "words": ws, "font": os.path.basename(font), "font_size": fs, "angle": angle,
                      "colour": colour, "shape": shape})
    manifest = out / "captions.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    (out / "synth.json").write_text(json.dumps({"config": asdict(cfg), "images": cfg.n, "fonts": len(fonts),
                                                "fonts_used": sorted({x["font"] for x in lines})}, indent=1))
    return manifest
