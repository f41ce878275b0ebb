"""Does the default's QB-Norm (bundled 5,000-caption Multi30K bank) help on small galleries too? (issue 17)

QB-Norm's statistics describe how often each gallery item is a querybank caption's best match. On a folder of a
handful of photos every item is some caption's best match, so one may fear it only adds noise there. This measures
t2i R@1 with and without it on random galleries of G unseen flickr8k-dev photos (the adapter fitted on the other
half + coco-mini, as the halves protocol of ``concept_rounds.py``), 3 seeds x 2 halves, several galleries per size.

    python benchmarks/concept_qbnorm_gallery.py --flickr cache/f8k.npz --coco cache/coco.npz \
        --multi30k ../shared/data/multi30k
"""
from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

from concept_quality import Cached, _embed_cached
from concept_rounds import Recipe

DEFAULT = dict(features="logits", a=0.3, b=0.3, caption_ridge=10.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flickr", required=True)
    ap.add_argument("--coco", required=True)
    ap.add_argument("--multi30k", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128, 249])
    a = ap.parse_args()
    from xmr.encoders.concept import ConceptConfig, ConceptEncoder
    from xmr.eval import evaluate_sims
    from xmr.rescore.qbnorm import qb_norm

    enc = ConceptEncoder(ConceptConfig())
    F, C = Cached(a.flickr, enc), Cached(a.coco, enc)
    lines = [x.strip() for x in gzip.open(Path(a.multi30k) / "train.en.gz", "rt", encoding="utf-8") if x.strip()]
    bank = _embed_cached(enc, lines[:5000], Path(a.flickr).with_name("multi30k_bank5000.q.npy"))
    n, res = len(F.pm), {}
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(n)
        halves = [np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])]
        for h in (0, 1):
            model = Recipe(DEFAULT, [F.subset(halves[h]), C], enc.class_emb)
            test = halves[1 - h]
            for g in a.sizes:
                rng = np.random.default_rng(50 + 7 * seed + h)
                for _ in range(max(1, 64 // g) if g < len(test) else 1):
                    B = F.subset(np.sort(rng.choice(test, g, replace=False)) if g < len(test) else test)
                    s = model.sims(B)
                    r0 = evaluate_sims(s, B.t2i)["t2i"]["R@1"]
                    r1 = evaluate_sims(qb_norm(s, model.sims(B, bank), beta=20.0), B.t2i)["t2i"]["R@1"]
                    res.setdefault(min(g, len(test)), []).append((r0, r1))
    print("| gallery (photos) | galleries | t2i R@1 none | with QB-Norm | paired gain (± s.e.) |\n|---:|---:|---:|---:|---:|")
    for g, v in sorted(res.items()):
        v = np.array(v)
        d = v[:, 1] - v[:, 0]
        print(f"| {g} | {len(v)} | {v[:, 0].mean():.1f} | {v[:, 1].mean():.1f} | {d.mean():+.1f} ± "
              f"{d.std() / np.sqrt(len(d)):.1f} |")


if __name__ == "__main__":
    main()
