"""Side-text claims on synthetic worlds, 3 seeds, mean +- std (docs/experts.md, "Side text: recipes, comments,
entities").

* recipes (Salvador et al. 2021): image <-> recipe retrieval where the dish photo is made of its ingredients;
  the hierarchical tower (per-item sentence embeddings, a transformer per field, merge) vs the flat baseline (the
  whole recipe as one sentence embedding), and the self-supervised recipe loss on / off. Recipe1M's 1k protocol
  (medR, R@1/5/10 over 10 bags of 1,000 test pairs).

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


def make_recipes(n: int, seed: int, image_dim: int = 64, noise: float = 0.5):
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


def recipes_part(encoder, seeds, n_train=1500, n_test=1000, epochs=25):
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
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
