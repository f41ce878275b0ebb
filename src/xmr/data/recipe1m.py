"""``recipe1m:DIR[:train|val|test][?root=IMAGES&text=full|title]`` — Recipe1M image <-> recipe retrieval::

    DIR/layer1.json   [{"id": "000018c8a5", "title": "Worlds Best Mac and Cheese", "partition": "train",
                        "ingredients": [{"text": "6 ounces penne"}, ...],
                        "instructions": [{"text": "Preheat the oven to 350 F."}, ...], "url": "..."}, ...]
    DIR/layer2.json   [{"id": "000018c8a5", "images": [{"id": "3e233001e2.jpg", "url": "..."}, ...]}, ...]
    ROOT/<partition>/<i0>/<i1>/<i2>/<i3>/<image id>      (the released image tars' layout; i0..i3 = first 4
                                                        characters of the image id; ROOT defaults to DIR)

One item per recipe that has at least one image (``layer2``), the recipe's first image as its media file (as the
1k / 10k test protocols of Salvador et al. do: one image per recipe). The caption is the whole recipe
(``text=full``: title, then ingredients, then instructions, joined) or its title (``text=title``). The structured
recipe (title, ingredient list, instruction list) is :func:`read_recipes`, which the hierarchical recipe tower
(:mod:`xmr.heads.recipe`) encodes field by field. Side text: title, ingredients, instructions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from ..errors import ConfigError
from ._video_common import choose, dataset_folder, annotation_file, load_json
from .base import DATASETS, Item, RetrievalDataset, select_split, take_options
from .side_text import register_side_text

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Recipe:
    id: str
    title: str
    ingredients: tuple[str, ...]
    instructions: tuple[str, ...]
    image: str  # absolute path of its first image
    split: str

    def full_text(self) -> str:
        return f"{self.title}. Ingredients: {'; '.join(self.ingredients)}. {' '.join(self.instructions)}".strip()


def _texts(entry: dict, key: str, where: str) -> tuple[str, ...]:
    v = entry.get(key, [])
    if not isinstance(v, list):
        raise ConfigError(f"{where}: '{key}' must be a list of {{\"text\": ...}} objects")
    out = []
    for x in v:
        t = x.get("text") if isinstance(x, dict) else x
        if isinstance(t, str) and t.strip():
            out.append(" ".join(t.split()))
    return tuple(out)


def read_recipes(folder: str, root: str | None = None) -> list[Recipe]:
    """Every recipe of ``layer1.json`` that ``layer2.json`` gives an image, in ``layer1`` order."""
    l1 = load_json(annotation_file(folder, "layer1.json", "Recipe1M layer1.json"))
    l2 = load_json(annotation_file(folder, "layer2.json", "Recipe1M layer2.json (the images)"))
    if not isinstance(l1, list) or not isinstance(l2, list):
        raise ConfigError(f"{folder}: layer1.json and layer2.json must each hold a JSON list of recipes")
    root = os.path.abspath(os.path.expanduser(root or folder))
    images = {}
    for j, e in enumerate(l2):
        if isinstance(e, dict) and isinstance(e.get("images"), list) and e["images"]:
            first = e["images"][0]
            name = first.get("id") if isinstance(first, dict) else None
            if not isinstance(name, str) or len(name) < 5 or "/" in name or "\\" in name:
                raise ConfigError(f"layer2.json[{j}]: image id {name!r} is not a file name such as 3e233001e2.jpg")
            images[str(e.get("id"))] = name
    out = []
    for j, e in enumerate(l1):
        where = f"layer1.json[{j}]"
        if not isinstance(e, dict) or "id" not in e:
            raise ConfigError(f"{where}: needs an object with 'id', 'title', 'ingredients', 'instructions'")
        rid = str(e["id"])
        if rid not in images:
            continue
        part = e.get("partition")
        if part not in SPLITS:
            raise ConfigError(f"{where}: 'partition' must be one of {', '.join(SPLITS)}, got {part!r}")
        title = " ".join(str(e.get("title") or "").split())
        ingr, instr = _texts(e, "ingredients", where), _texts(e, "instructions", where)
        if not (title or ingr or instr):
            raise ConfigError(f"{where}: the recipe has no title, ingredients or instructions")
        img = images[rid]
        out.append(Recipe(rid, title, ingr, instr, os.path.join(root, part, *img[:4], img), part))
    if not out:
        raise ConfigError(f"{folder}: no recipe of layer1.json has an image in layer2.json")
    return out


@DATASETS.register("recipe1m", help="Recipe1M image <-> recipe: recipe1m:DIR[:train|val|test][?root=&text=full|title]")
def load_recipe1m(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]
                  ) -> RetrievalDataset:
    opts = take_options("recipe1m", options, ("root", "text"))
    mode = choose(opts, "text", ("full", "title"), "recipe1m")
    folder = dataset_folder(arg, "Recipe1M")
    recipes = read_recipes(folder, opts.get("root"))
    items = [Item(r.image, (r.full_text() if mode == "full" or not r.title else r.title,), split=r.split, id=r.id)
             for r in recipes]
    items = select_split(items, split, os.path.join(folder, "layer1.json"))
    return RetrievalDataset.from_items("recipe1m" + (f":{split}" if split else ""), items,
                                       caption_policy=caption_policy,
                                       source_files=[os.path.join(folder, "layer1.json"),
                                                     os.path.join(folder, "layer2.json")])


@register_side_text("recipe1m")
def recipe1m_side_text(arg: str, options: dict) -> list[dict]:
    recipes = read_recipes(dataset_folder(arg, "Recipe1M"), options.get("root"))
    wanted = options.get("split")
    return [{"media": r.image, "title": r.title, "ingredients": list(r.ingredients),
             "instructions": list(r.instructions)} for r in recipes
            if wanted is None or r.split in wanted.split("+")]


__all__ = ["Recipe", "read_recipes", "load_recipe1m"]
