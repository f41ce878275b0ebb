"""Recipes: search an index of dish photos whose recipes came in with ``xmr index --manifest`` through a trained
hierarchical recipe tower (:mod:`xmr.heads.recipe`, Salvador et al., CVPR 2021; ``xmr train-recipe``).

The tower maps a recipe (title, ingredients, instructions: one sentence embedding per item from the index model's
text tower) and an image (the index model's image embedding) into one joint space. The index already holds every
input it needs: each item's image vector, and its recipe as sidecar rows ``manifest:title``,
``manifest:ingredients``, ``manifest:instructions`` (one row per ingredient / step, in manifest order, each row's
vector the index model's sentence embedding). So search runs the paper's two directions exactly over the index:

* **image query** (``xmr search --image dish.jpg``, the image upload of ``xmr serve``): image -> recipe, the paper's
  main task: ``s = img(q) . rec(recipe of item)`` for every item that has a recipe (the others have none to match);
  each result carries the matched recipe's title (``match: "recipe"``);
* **text query**: recipe -> image with the query as a recipe title (its ingredients and instructions empty):
  ``s = rec(title=q) . img(v)`` for every item of the index.

Every item is scored (exact numpy scan; the items' recipe embeddings are computed once per index generation and
kept), so the visual first stage's candidates are replaced, not re-ranked: the stage's ``pool`` best items go on.
Refused: a flat tower (it needs the whole recipe's sentence embedding, which the index does not store), a tower of
another width than the index, an index without recipe rows (image queries), queries other than one text or one
image.
"""
from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from ..result import SearchResult
from .base import Stage, StageContext

FIELDS = ("title", "ingredients", "instructions")
ROW_FIELDS = {f"manifest:{f}": f for f in FIELDS}


def index_recipes(reader, max_items: int = 20):
    """(item ids (N,), :class:`xmr.heads.recipe.RecipeBatch` of their recipes, titles [N]) of the items whose
    sidecar rows hold a recipe (a title, ingredients or instructions from ``xmr index --manifest``), rows in index
    order, the first ``max_items`` per list field; the flat embedding is left zero (not stored in an index)."""
    from ...heads.recipe import RecipeBatch

    row_ids, row_items, row_experts, vecs = reader.expert_matrix()
    side = [j for j, e in enumerate(row_experts) if e == "sidecar"]
    rows = reader.expert_rows([int(row_ids[j]) for j in side]) if side else {}
    per: dict[int, dict[str, list]] = {}
    titles: dict[int, str] = {}
    for j in sorted(side, key=lambda j: int(row_ids[j])):  # index order: the manifest's order of the items
        r = rows.get(int(row_ids[j]))
        f = ROW_FIELDS.get(r.field) if r is not None else None
        if f is None:
            continue
        i = int(row_items[j])
        lst = per.setdefault(i, {k: [] for k in FIELDS})[f]
        if len(lst) < (1 if f == "title" else max_items):
            lst.append(vecs[j])
            if f == "title":
                titles[i] = r.text
    ids = np.array(sorted(per), np.int64)
    d = vecs.shape[1]
    x, mask = {}, {}
    for f in FIELDS:
        L = max([len(per[i][f]) for i in ids] + [1])
        x[f] = np.zeros((len(ids), L, d), np.float32)
        mask[f] = np.zeros((len(ids), L), bool)
        for k, i in enumerate(ids):
            for n, v in enumerate(per[int(i)][f]):
                x[f][k, n], mask[f][k, n] = v, True
    return ids, RecipeBatch(x, mask, np.zeros((len(ids), d), np.float32)), [titles.get(int(i), "") for i in ids]


def load_tower(directory):
    """The tower in ``directory`` (``xmr train-recipe``); ConfigError for a flat one (an index cannot feed it)."""
    from ...heads.recipe import RecipeTower

    tower = RecipeTower.load(directory)
    if tower.config.mode != "hierarchical":
        raise ConfigError(f"--recipe-tower {directory} is a flat tower (the whole recipe as one sentence), which an "
                          "index cannot feed; train a hierarchical one (xmr train-recipe, the default)")
    return tower


class RecipeStage(Stage):
    name = "recipe"
    changes_scores = True

    def __init__(self, tower_dir: str, pool: int = 1000, tower=None):
        self.tower_dir = str(tower_dir)
        self.tower = tower if tower is not None else load_tower(tower_dir)
        self.pool = int(pool)
        self._cache = None  # (index path, generation, ids, recipe vectors, titles)

    def params(self) -> dict:
        return {"tower": self.tower_dir, "model": "hierarchical recipe tower (Salvador et al. 2021)",
                "direction": "image -> recipe / text (as a recipe title) -> image", "pool": self.pool}

    def check_index(self, reader, encoder, media_type: str | None) -> None:
        c = self.tower.config
        if c.text_dim != reader.dim or c.image_dim != reader.dim:
            raise ConfigError(f"--recipe-tower {self.tower_dir} was trained on {c.text_dim}-d sentence / "
                              f"{c.image_dim}-d image embeddings, index {reader.path} holds {reader.dim}-d ones; "
                              "train one on this index (xmr train-recipe --index DIR)")

    def check_query(self, query) -> None:
        t = query.terms
        if len(t) != 1 or t[0].kind not in ("text", "image") or t[0].weight <= 0 or query.composer is not None:
            raise ConfigError("--recipe-tower takes one text query (a recipe title: finds the dish's photos) or one "
                              "--image (a dish photo: finds its recipe), without --not / --composer")

    def _recipes(self, reader):
        key = (str(reader.path), reader.generation)
        if self._cache is None or self._cache[:2] != key:
            ids, batch, titles = index_recipes(reader, self.tower.config.max_items)
            vecs = self.tower.encode_recipes(batch) if len(ids) else np.zeros((0, self.tower.config.dim), np.float32)
            self._cache = (*key, ids, vecs, titles)
        return self._cache[2:]

    def run(self, ctx: StageContext, cands: list[SearchResult]) -> list[SearchResult]:
        from ...heads.recipe import RecipeBatch

        reader, q = ctx.reader, np.asarray(ctx.emb.vectors[0], np.float32)
        shown: dict[int, tuple[str, float]] = {}
        if ctx.emb.query.terms[0].kind == "image":  # image -> recipe
            ids, R, titles = self._recipes(reader)
            if not len(ids):
                raise ConfigError(f"index {reader.path} holds no recipes: index the photos with xmr index DIR "
                                  "--manifest recipes.jsonl (title, ingredients, instructions per photo)")
            s = R @ self.tower.encode_images(q[None])[0]
            shown = {int(i): (t, float(v)) for i, t, v in zip(ids, titles, s)}
        else:  # text as a recipe title -> image
            d = q.shape[0]
            batch = RecipeBatch({"title": q[None, None]} | {f: np.zeros((1, 1, d), np.float32) for f in FIELDS[1:]},
                                {"title": np.ones((1, 1), bool)} | {f: np.zeros((1, 1), bool) for f in FIELDS[1:]},
                                np.zeros((1, d), np.float32))
            r = self.tower.encode_recipes(batch)[0]
            parts_i, parts_s = [], []
            for ids_c, v in reader.iter_vectors():
                parts_i.append(np.asarray(ids_c, np.int64))
                parts_s.append(self.tower.encode_images(v) @ r)
            ids = np.concatenate(parts_i) if parts_i else np.zeros(0, np.int64)
            s = np.concatenate(parts_s) if parts_s else np.zeros(0, np.float32)
        order = np.argsort(-s, kind="stable")
        recs = reader.get_items([int(ids[j]) for j in order[: self.pool * (4 if ctx.media_type else 1)]])
        out: list[SearchResult] = []
        for j in order:
            i = int(ids[j])
            rec = recs.get(i)
            if rec is None or (ctx.media_type is not None and rec.media_type != ctx.media_type):
                continue
            r = SearchResult(0, i, rec.path, float(s[j]), rec.media_type, rec.root)
            if i in shown:
                r.match = "recipe"
                r.experts = {"recipe": {"score": round(shown[i][1], 6), "text": shown[i][0], "field": "manifest:title"}}
            out.append(r)
            if len(out) >= self.pool:
                break
        return out
