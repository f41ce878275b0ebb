"""Source -> binary retrieval of the same C functions, CodeCMR-style, with xmr's metrics.

Per seed: ``--n`` random functions (new ones per seed), compiled with gcc at -O0 and -O2; 70 % of the functions
train the encoder pair (source vs. binary at both levels), the other 30 % are the test: each test source queries the
test binaries of one level. Baseline: integer overlap (Jaccard of the source's integer literals and the binary's
immediates; no training), the feature CodeCMR adds to its networks, and the sum of the learned cosine and that
overlap (CodeCMR's networks see the integers as a separate input channel).
Metrics: xmr.eval.ranks (R@1/5/10 percent, MdR).

    OMP_NUM_THREADS=1 python -m xmr_codecmr.bench --seeds 0 1 2 [--save DIR]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from xmr.eval.ranks import metrics_from_ranks, ranks_t2i

from .data import make_pairs
from .model import CodeCmrConfig, bag, binary_tokens, save, source_tokens, train

KEYS = ("R@1", "R@5", "R@10", "MdR")
LEVELS = ("O0", "O2")


def _ints(tokens, prefix):
    return {t for t in tokens if t.startswith(prefix)}


def overlap_scores(src, bins) -> np.ndarray:
    a = [{t[4:] for t in _ints(source_tokens(s), "num:")} for s in src]
    b = [{t[4:] for t in _ints(binary_tokens(i), "imm:")} for i in bins]
    return np.array([[len(x & y) / max(1, len(x | y)) for y in b] for x in a], np.float32)


def _metrics(scores) -> dict:
    m = metrics_from_ranks(ranks_t2i(scores, np.arange(len(scores))), ks=(1, 5, 10))
    return {k: round(float(m[k]), 2) for k in KEYS}


def run_seed(seed: int, args):
    pairs = make_pairs(args.n, seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    ntr = int(0.7 * len(pairs))
    tr, te = [pairs[i] for i in order[:ntr]], [pairs[i] for i in order[ntr:]]
    model, losses = train(tr, LEVELS, CodeCmrConfig(seed=seed), epochs=args.epochs)
    out = {}
    with torch.no_grad():
        qs = model.encode_sources(torch.from_numpy(bag([source_tokens(p.source) for p in te])))
        for lvl in LEVELS:
            bins = [p.binaries[lvl] for p in te]
            gb = model.encode_binaries(torch.from_numpy(bag([binary_tokens(b) for b in bins])))
            learned, ints = (qs @ gb.T).numpy(), overlap_scores([p.source for p in te], bins)
            out[f"codecmr {lvl}"] = _metrics(learned)
            out[f"integer overlap {lvl}"] = _metrics(ints)
            out[f"codecmr + integer overlap {lvl}"] = _metrics(learned + ints)
    return out, model, len(te), losses[-1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=400, help="functions per seed")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--save", default=None, help="save the first seed's model here (codecmr:DIR)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    runs = {}
    for seed in args.seeds:
        t0 = time.time()
        runs[seed], model, n_test, last = run_seed(seed, args)
        print(f"seed {seed}: {n_test} test functions, last loss {last:.3f}, {time.time() - t0:.0f} s", flush=True)
        if args.save and seed == args.seeds[0]:
            save(model, args.save)
    rows = list(runs[args.seeds[0]])
    print(f"\n| method (source -> binary) | " + " | ".join(KEYS) + " |\n| --- |" + " --- |" * len(KEYS))
    for r in rows:
        vals = [np.array([runs[s][r][k] for s in args.seeds]) for k in KEYS]
        print(f"| {r} | " + " | ".join(f"{v.mean():.1f} +- {v.std():.1f}" for v in vals) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
