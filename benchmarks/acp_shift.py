"""ACP (Adaptive Cross-Modal Prototypes) before / after on a shifted synthetic domain.

The feature-level attribute world (:mod:`xmr.synth.attributes`, 4 attribute groups of 6/5/4/3 values, 32-d): 2000
*source* items with 2 captions each train the heads; 500 *target* items are the collection to adapt to. Their image
features go through a domain shift (``x -> (I + s R / sqrt(d)) x + b``: a random linear distortion of strength
``--shift`` and an offset ``b`` of norm ``--offset``; R, b fixed per seed) and their captions are used only to
evaluate (text -> image R@1 / R@5 over the 500 target images, 1000 captions). "before": heads trained on the source
pairs alone (symmetric InfoNCE); "after": the same heads trained with ACP's prototype and mutual-information terms
using the unlabelled target images (:mod:`xmr.train.acp`). Same schedule, 3 seeds (world, shift and init).

    python benchmarks/acp_shift.py                           # a linear distortion + offset (strong shift)
    python benchmarks/acp_shift.py --shift 0 --offset 1.0    # an offset only (a colour-cast-like shift)

Defaults are ACPConfig's (tau 0.5, weights 1 / 1 / 0.1), chosen after a one-seed sweep (seed 0, 15 epochs) of tau
in {0.1, 0.5}, the weights and warm-up; docs/interactive.md lists what was tried.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _norm(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)).astype(np.float32)


def _recall(sims, t2i):
    order = np.argsort(-sims, axis=1)
    ranks = np.array([np.where(order[i] == t2i[i])[0][0] for i in range(len(t2i))])
    return {"R@1": float((ranks < 1).mean() * 100), "R@5": float((ranks < 5).mean() * 100)}


def run(seed, args):
    import torch

    from xmr.encoders.trained import adapted_numpy
    from xmr.synth.attributes import attribute_world
    from xmr.train.acp import ACPConfig, adapt

    w = attribute_world(2500, captions_per_item=2, dim=32, noise=0.3, seed=seed)
    rng = np.random.default_rng(1000 + seed)
    d = w.image_features.shape[1]
    M = np.eye(d) + args.shift * rng.normal(size=(d, d)) / np.sqrt(d)
    b = rng.normal(size=d)
    b = args.offset * b / np.linalg.norm(b)
    img = w.image_features.astype(np.float64)
    src_items, tgt_items = np.arange(2000), np.arange(2000, 2500)
    tgt_raw = img[tgt_items] @ M.T + b * np.linalg.norm(img[tgt_items], axis=1, keepdims=True)
    si, ti = _norm(img[src_items]), _norm(tgt_raw)
    src_txt = np.isin(w.text_to_item, src_items)
    st, s_t2i = _norm(w.text_features[src_txt]), w.text_to_item[src_txt]
    tt, t_t2i = _norm(w.text_features[~src_txt]), w.text_to_item[~src_txt] - 2000
    cfg = ACPConfig(prototypes=args.prototypes, residual=False, hidden=64, epochs=args.epochs, batch_size=256,
                    lr=3e-3, seed=seed, warmup=args.warmup, tau=args.tau, w_uni=args.w_uni, w_cross=args.w_cross,
                    w_mi=args.w_mi)
    out = {}
    torch.set_num_threads(1)
    for name, src_only in (("before (source only)", True), ("after (ACP)", False)):
        heads = adapt(si, st, s_t2i, ti, cfg, source_only=src_only)
        zi, zt = adapted_numpy(heads, ti, "image"), adapted_numpy(heads, tt, "text")
        out[name] = _recall(zt @ zi.T, t_t2i)
        zsrc = adapted_numpy(heads, _norm(img[tgt_items]), "image")  # the same items without the shift
        out[name.split()[0] + " on unshifted target images"] = _recall(zt @ zsrc.T, t_t2i)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shift", type=float, default=1.0)
    ap.add_argument("--offset", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--prototypes", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--tau", type=float, default=0.5)
    ap.add_argument("--w-uni", type=float, default=1.0)
    ap.add_argument("--w-cross", type=float, default=1.0)
    ap.add_argument("--w-mi", type=float, default=0.1)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    runs = [run(s, args) for s in range(args.seeds)]
    print(json.dumps({"shift": args.shift, "offset": args.offset, "epochs": args.epochs,
                      "prototypes": args.prototypes, "warmup": args.warmup, "tau": args.tau,
                      "weights": [args.w_uni, args.w_cross, args.w_mi],
                      "seeds": args.seeds, "seconds": round(time.perf_counter() - t0, 1)}))
    for k in runs[0]:
        print(json.dumps({"model": k, **{m: f"{np.mean([r[k][m] for r in runs]):.1f} +- "
                                            f"{np.std([r[k][m] for r in runs]):.1f}" for m in runs[0][k]}}))


if __name__ == "__main__":
    main()
