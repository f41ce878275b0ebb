"""Side-text claims on synthetic worlds, 3 seeds, mean +- std (docs/experts.md, "Side text: recipes, comments,
entities").

* recipes (Salvador et al. 2021): image <-> recipe retrieval where the dish photo is made of its ingredients;
  the hierarchical tower (per-item sentence embeddings, a transformer per field, merge) vs the flat baseline (the
  whole recipe as one sentence embedding), and the self-supervised recipe loss on / off. Recipe1M's 1k protocol
  (medR, R@1/5/10 over 10 bags of 1,000 test pairs).

* comments (VTC, Hanu et al. 2022): items whose visual embedding shows only the object (a noisy embedding of
  "a <object>"), captions "a <colour> <object> <place>", comments that name the colour or the place plus noise
  comments (generic ones and other items' comments); visual only vs VTC's averaging baseline vs the trained
  context adapter, tested with relevant + noise comments, noise comments only, and none.

Run: ``python benchmarks/side_text.py --out side_text.json [--model concept] [--seeds 0 1 2]``.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

INGREDIENTS = ("tomato basil garlic onion carrot potato chicken beef pork salmon shrimp tofu rice pasta flour sugar "
               "butter egg milk cheese lemon lime apple banana strawberry chocolate honey ginger chili pepper "
               "mushroom spinach lettuce cucumber avocado corn beans peas yogurt cinnamon").split()
DISHES = "soup salad stew curry pie cake bread pasta bake skewers stir-fry omelette smoothie tart risotto".split()
VERBS = ("chop", "slice", "boil", "fry", "roast", "mix", "whisk", "grate", "simmer", "season")
ADJ = ("easy", "classic", "spicy", "quick", "homemade", "rustic", "creamy", "grandma's")


def make_recipes(n: int, seed: int, image_dim: int = 64, noise: float = 1.0):
    """Recipes with 6-12 ingredients; the image feature is the sum of its ingredients' prototypes plus its dish's,
    plus Gaussian noise (the same prototypes for every split of one seed's world)."""
    rng = np.random.default_rng(seed)
    world = np.random.default_rng(1000 + seed)
    proto_i = world.normal(size=(len(INGREDIENTS), image_dim))
    proto_d = world.normal(size=(len(DISHES), image_dim))
    recipes, images = [], []
    for _ in range(n):
        k = int(rng.integers(6, 13))
        ing = rng.choice(len(INGREDIENTS), k, replace=False)
        dish = int(rng.integers(len(DISHES)))
        title = f"{ADJ[rng.integers(len(ADJ))]} {INGREDIENTS[ing[0]]} {DISHES[dish]}"
        steps = [f"{VERBS[rng.integers(len(VERBS))]} the {INGREDIENTS[i]}" for i in ing]
        recipes.append({"title": title, "ingredients": [f"{rng.integers(1, 5)} {INGREDIENTS[i]}" for i in ing],
                        "instructions": steps})
        x = proto_i[ing].sum(0) / np.sqrt(k) + 0.5 * proto_d[dish] + noise * rng.normal(size=image_dim)
        images.append(x / np.linalg.norm(x))
    return recipes, np.asarray(images, np.float32)


def recipes_part(encoder, seeds, n_train=1000, n_test=1000, epochs=12):
    from xmr.eval.recipe_protocol import recipe_protocol
    from xmr.heads.recipe import RecipeTowerConfig, encode_recipes, train_recipe_tower

    variants = {"flat": dict(mode="flat", rec_weight=0.0), "hierarchical": dict(mode="hierarchical", rec_weight=0.0),
                "hierarchical + L_rec": dict(mode="hierarchical", rec_weight=1.0)}
    res = {v: [] for v in variants}
    for seed in seeds:
        rec, img = make_recipes(n_train + n_test, seed)
        batch = encode_recipes(encoder, rec)
        tr, te = np.arange(n_train), np.arange(n_train, n_train + n_test)
        for name, kw in variants.items():
            t0 = time.perf_counter()
            cfg = RecipeTowerConfig(text_dim=batch.flat.shape[1], image_dim=img.shape[1], dim=128, **kw)
            tower = train_recipe_tower(batch.take(tr), img[tr], cfg, epochs=epochs, seed=seed)
            m = recipe_protocol(tower.encode_images(img[te]), tower.encode_recipes(batch.take(te)), size=1000,
                                bags=10, seed=seed)
            m["train_s"] = round(time.perf_counter() - t0, 1)
            res[name].append(m)
            print(seed, name, m, flush=True)
    return res


COLORS = "red blue green yellow black white orange purple".split()
OBJECTS = "bicycle car dog cat guitar boat kite horse umbrella train tent pizza cake drone skateboard".split()
PLACES = ("on the beach", "in the snow", "in a forest", "in the city", "in the desert", "by a lake",
          "in a kitchen", "on a mountain", "at night", "in the rain")
GENERIC = ("first!", "lol", "subscribe to my channel", "who is watching this in 2022", "nice video",
           "this made my day", "I don't get it", "like if you agree", "amazing", "what song is this")


def make_comment_world(n: int, seed: int, noise: float = 1.2, k: int = 6):
    rng = np.random.default_rng(seed)
    combos = [(c, o, p) for c in range(len(COLORS)) for o in range(len(OBJECTS)) for p in range(len(PLACES))]
    pick = rng.choice(len(combos), n, replace=False)
    items = [combos[i] for i in pick]
    captions = [f"a {COLORS[c]} {OBJECTS[o]} {PLACES[p]}" for c, o, p in items]
    relevant = [[f"love the {COLORS[c]} one", f"great shot {PLACES[p]}"] for c, o, p in items]
    return items, captions, relevant, rng


def comments_part(encoder, seeds, n_train=800, n_test=400, dim=128, epochs=30, k=6):
    from xmr.heads.vtc import ContextAdapterConfig, average_comments, train_context_adapter

    res = {}
    for seed in seeds:
        items, caps, rel, rng = make_comment_world(n_train + n_test, seed)
        texts = list(dict.fromkeys(caps + [f"a {OBJECTS[o]}" for _, o, _ in items] + [x for r in rel for x in r]
                                   + list(GENERIC)))
        E = encoder.encode_text(texts, show_progress=False)
        E = E - E.mean(0)
        _, _, vt = np.linalg.svd(E, full_matrices=False)  # PCA to `dim` (the adapter's width; see docs)
        P = E @ vt[:dim].T
        P /= np.linalg.norm(P, axis=1, keepdims=True)
        emb = dict(zip(texts, P.astype(np.float32)))
        q = np.stack([emb[c] for c in caps])
        v = np.stack([emb[f"a {OBJECTS[o]}"] for _, o, _ in items]) + 0.35 * rng.normal(size=(len(items), dim))
        v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

        def slots(relevant: bool):
            C = np.zeros((len(items), k, dim), np.float32)
            for i in range(len(items)):
                pool = list(rel[i]) if relevant else []
                while len(pool) < k:
                    j = int(rng.integers(len(items)))
                    pool.append(GENERIC[rng.integers(len(GENERIC))] if rng.random() < 0.5 or j == i else rel[j][rng.integers(2)])
                order = rng.permutation(k)
                C[i] = np.stack([emb[pool[t]] for t in order])
            return C

        C_rel, C_noise = slots(True), slots(False)
        present = np.ones((len(items), k), bool)
        tr, te = np.arange(n_train), np.arange(n_train, n_train + n_test)
        cfg = ContextAdapterConfig(dim=dim)
        ad = train_context_adapter(v[tr], C_rel[tr], present[tr], q[tr], cfg, epochs=epochs, seed=seed)

        def r_at(items_emb):
            s = q[te] @ items_emb.T
            r = (s >= np.diag(s)[:, None]).sum(1)
            return {f"R@{x}": float((r <= x).mean()) for x in (1, 5, 10)} | {"medR": float(np.median(r))}

        none = np.zeros((len(te), k), bool)
        rows = {"visual only": r_at(v[te]),
                "average, relevant + noise comments": r_at(average_comments(v[te], C_rel[te], present[te])),
                "average, noise comments only": r_at(average_comments(v[te], C_noise[te], present[te])),
                "adapter, relevant + noise comments": r_at(ad.adapt(v[te], C_rel[te], present[te])),
                "adapter, noise comments only": r_at(ad.adapt(v[te], C_noise[te], present[te])),
                "adapter, no comments": r_at(ad.adapt(v[te], C_rel[te], none))}
        for name, m in rows.items():
            res.setdefault(name, []).append(m)
        print(seed, json.dumps(rows), ad.info, flush=True)
    return res


def summarise_flat(runs):
    return {name: {k: f"{np.mean([m[k] for m in ms]):.3f} +- {np.std([m[k] for m in ms]):.3f}" for k in ms[0]}
            for name, ms in runs.items()}


def summarise(runs):
    out = {}
    for name, ms in runs.items():
        row = {}
        for d in ("im2recipe", "recipe2im"):
            for k in ("medR", "R@1", "R@5", "R@10"):
                v = np.array([m[d][k] for m in ms])
                row[f"{d} {k}"] = f"{v.mean():.3f} +- {v.std():.3f}"
        out[name] = row
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="side_text.json")
    ap.add_argument("--model", default="concept")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--parts", nargs="+", default=["recipes"])
    a = ap.parse_args()
    from xmr import create_encoder

    enc = create_encoder(a.model)
    report = {"model": a.model, "seeds": a.seeds}
    if "recipes" in a.parts:
        runs = recipes_part(enc, a.seeds)
        report["recipes"] = {"runs": runs, "summary": summarise(runs)}
        print(json.dumps(report["recipes"]["summary"], indent=1))
    if "comments" in a.parts:
        runs = comments_part(enc, a.seeds)
        report["comments"] = {"runs": runs, "summary": summarise_flat(runs)}
        print(json.dumps(report["comments"]["summary"], indent=1))
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
