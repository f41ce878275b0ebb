"""Issue 17: how the default ``concept`` adapter's real-photo quality grows with the number of caption-image pairs.

The adapter (docs/concept.md, Round 2: two ridge maps on frozen EfficientNet-Lite0 logits and MiniLM caption
embeddings) is refitted on random subsets of flickr8k-dev's photos (each with its 5 captions), with and without all of
coco-mini, and tested on photos it never saw, under the two protocols of ``concept_rounds.py``:

* ``halves``: fit on ``n`` photos drawn from one half, test on the other half (249-photo gallery); 3 seeds x 2 halves;
* ``folds``: fit on ``n`` photos drawn from 4 of 5 folds, rank the 5th fold's captions against the full 498-photo
  gallery (the issue's gallery; its target is t2i R@1 >= 3 x 10.8 = 32.4 there); 3 fold assignments.

A least-squares line ``R@1 = c0 + c1 * log2(n)`` through the flickr8k-only points estimates the gain per doubling of
the pairs and how many pairs the target would take if the trend held (an extrapolation, said as one).

    python benchmarks/concept_learning_curve.py --flickr cache/f8k.npz --coco cache/coco.npz

(the caches come from ``concept_quality.py cache``; ~1 min on a core.)
"""
from __future__ import annotations

import argparse

import numpy as np

from concept_quality import Cached
from concept_rounds import Recipe, zero_shot

DEFAULT = dict(features="logits", a=0.3, b=0.3, caption_ridge=10.0)


def _r1(sims, t2i, direction="t2i") -> float:
    from xmr.eval import evaluate_sims

    return float(evaluate_sims(sims, t2i)[direction]["R@1"])


def halves(F, C, ce, sizes, seeds=3) -> dict:
    out: dict = {}
    n = len(F.pm)
    for seed in range(seeds):
        perm = np.random.default_rng(seed).permutation(n)
        hs = [np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])]
        for h in (0, 1):
            B = F.subset(hs[1 - h])
            out.setdefault(("zero-shot", 0), []).append((_r1(zero_shot(B, ce), B.t2i),
                                                         _r1(zero_shot(B, ce), B.t2i, "i2t")))
            rng = np.random.default_rng(1000 + 10 * seed + h)
            order = rng.permutation(hs[h])
            for m in sizes:
                A = F.subset(np.sort(order[: min(m, len(order))]))
                for tag, sets in (("flickr8k", [A]), ("flickr8k + coco-mini", [A, C])):
                    s = Recipe(DEFAULT, sets, ce).sims(B)
                    out.setdefault((tag, len(A.pm)), []).append((_r1(s, B.t2i), _r1(s, B.t2i, "i2t")))
    return out


def folds(F, C, ce, sizes, seeds=3) -> dict:
    out: dict = {("zero-shot", 0): [(_r1(zero_shot(F, ce), F.t2i), np.nan)]}
    n = len(F.pm)
    for seed in range(seeds):
        fold = np.random.default_rng(100 + seed).permutation(n) % 5
        rng = np.random.default_rng(2000 + seed)
        rows: dict = {}
        for k in range(5):
            pool = rng.permutation(np.flatnonzero(fold != k))
            capt = fold[F.t2i] == k
            G = F.query_subset(capt)
            for m in sizes:
                A = F.subset(np.sort(pool[: min(m, len(pool))]))
                for tag, sets in (("flickr8k", [A]), ("flickr8k + coco-mini", [A, C])):
                    key = (tag, min(m, len(pool)))
                    rows.setdefault(key, np.zeros((len(F.q), n)))[capt] = Recipe(DEFAULT, sets, ce).sims(G)
        for key, s in rows.items():
            out.setdefault(key, []).append((_r1(s, F.t2i), np.nan))
    return out


def trend(res: dict, tag: str) -> tuple[float, float]:
    pts = sorted((n, np.mean([r[0] for r in v])) for (t, n), v in res.items() if t == tag)
    x, y = np.log2([p[0] for p in pts]), np.array([p[1] for p in pts])
    c1, c0 = np.polyfit(x, y, 1)
    return float(c0), float(c1)


def table(res: dict, title: str, target: float | None) -> None:
    print(f"\n### {title}\n| training pairs | photos | t2i R@1 | i2t R@1 |\n|---|---:|---:|---:|")
    for (tag, n), v in sorted(res.items(), key=lambda kv: (kv[0][0] != "zero-shot", kv[0][0], kv[0][1])):
        t, i = np.array([r[0] for r in v]), np.array([r[1] for r in v])
        photos = n + (159 if "coco" in tag else 0)
        ic = "-" if np.isnan(i).all() else f"{i.mean():.1f} ± {i.std():.1f}"
        print(f"| {tag} | {photos if n else '-'} | {t.mean():.1f} ± {t.std():.1f} | {ic} |")
    c0, c1 = trend(res, "flickr8k")
    print(f"\nflickr8k-only trend: t2i R@1 = {c0:.1f} + {c1:.2f} * log2(photos)  (+{c1:.1f} per doubling)")
    if target is not None and c1 > 0:
        print(f"the line reaches {target:.1f} at ~{2 ** ((target - c0) / c1):,.0f} photos (x5 captions), "
              "if the trend held that far")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flickr", required=True)
    ap.add_argument("--coco", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[15, 31, 62, 124, 249, 398])
    a = ap.parse_args()
    from xmr.encoders.concept import ConceptConfig, ConceptEncoder

    enc = ConceptEncoder(ConceptConfig())
    F, C = Cached(a.flickr, enc), Cached(a.coco, enc)
    h = halves(F, C, enc.class_emb, [s for s in a.sizes if s <= len(F.pm) // 2])
    zs_half = np.mean([r[0] for r in h[("zero-shot", 0)]])
    table(h, "halves: test gallery 249 unseen photos (3 seeds x 2 halves)", 3 * zs_half)
    f = folds(F, C, enc.class_emb, a.sizes)
    table(f, "folds: test captions of unseen photos against the full 498-photo gallery (3 fold assignments)",
          3 * f[("zero-shot", 0)][0][0])


if __name__ == "__main__":
    main()
