"""``xmr train-recipe``: train the hierarchical recipe tower (:mod:`xmr.heads.recipe`) on an index whose photos got
their recipes from ``xmr index --manifest`` (each photo's title, ingredients and instructions as sidecar rows), for
``xmr search --recipe-tower DIR``.

The pairs are the index's own: an item's image vector and its recipe's rows (:func:`xmr.retrieval.stages.recipe.
index_recipes`: the same inputs search reads), so no captions file is needed. ``val_fraction`` of the items (drawn
with ``seed``) are held out and scored with Recipe1M's protocol on one bag of all of them (image -> recipe and
recipe -> image, medR and R@1/5/10; :func:`xmr.eval.recipe_protocol.recipe_protocol`).
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ConfigError


def train_recipe_from_index(index, out, *, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                            val_fraction: float = 0.2, config: dict | None = None):
    """Train on the recipes of ``index``; save to ``out`` (a new or empty folder). Returns (tower, held-out
    metrics or {})."""
    from ..config import config_from_dict
    from ..eval.recipe_protocol import recipe_protocol
    from ..heads.recipe import RecipeTowerConfig, train_recipe_tower
    from ..index.snapshot import open_reader
    from ..retrieval.stages.recipe import index_recipes

    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ConfigError(f"--out {out}: exists and is not an empty folder; give a new one")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    store, reader = open_reader(index)
    try:
        if reader.model_spec is None:
            raise ConfigError(f"index {index} is empty; run xmr index DIR --manifest recipes.jsonl first")
        cfg = config_from_dict(RecipeTowerConfig, {"text_dim": reader.dim, "image_dim": reader.dim,
                                                   **(config or {})})
        if cfg.mode != "hierarchical":
            raise ConfigError("xmr train-recipe trains the hierarchical tower (an index does not store the flat "
                              "baseline's whole-recipe embedding)")
        ids, batch, _ = index_recipes(reader, cfg.max_items)
        if len(ids) < 2:
            raise ConfigError(f"index {index} holds {len(ids)} item(s) with a recipe; index dish photos with xmr index "
                              "DIR --manifest recipes.jsonl (lines with media, title, ingredients, instructions; "
                              "xmr side-text recipe1m:DIR writes one)")
        images = reader.item_vectors(ids)
    finally:
        store.close()
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(ids))) if len(ids) * val_fraction >= 2 else 0
    val = np.zeros(len(ids), bool)
    val[rng.choice(len(ids), n_val, replace=False)] = True
    train = np.flatnonzero(~val)
    if len(train) < 2:
        raise ConfigError(f"only {len(train)} training pair(s) left after holding out {n_val}; lower --val-fraction")
    tower = train_recipe_tower(batch.take(train), images[train], cfg, epochs=epochs, batch_size=batch_size, lr=lr,
                               seed=seed)
    metrics = {}
    if n_val:
        vi = np.flatnonzero(val)
        metrics = recipe_protocol(tower.encode_images(images[vi]), tower.encode_recipes(batch.take(vi)), size=n_val,
                                  bags=1, seed=seed)
    tower.info.update({"index": str(index), "held_out_items": int(n_val), "held_out": metrics})
    tower.save(out)
    return tower, metrics


__all__ = ["train_recipe_from_index"]
