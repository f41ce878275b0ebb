"""Video corpus moment retrieval on synthetic moments with a planted bias: SQuiDNet with and without debiasing,
and the sliding-window search of today's index as a floor. Metrics from ``xmr.eval.vcmr`` (TVR's evaluator).

Claim checked (SQuiDNet, Yoon et al., ECCV 2022): selective query-guided debiasing improves moment retrieval over
the same network trained naively, because the naive one follows the retrieval bias (an object's frequent
predicate) where it is wrong, while the selective decision keeps it where it is right.

Setup (``xmr.synth.moments``; everything at feature level, numpy + a small torch model, CPU):
  * world per seed (``MomentWorld(world_seed=seed, predicate_weight=0.25, detail_weight=0.3)``): 8 objects,
    6 predicates, 32-d joint space; every object has a frequent predicate;
  * train: 300 videos x 32 clips of 1.5 s, 2 events each, ``frequent_share=0.8`` (the bias), one query per
    event (600 queries); test: 150 videos, ``frequent_share=0.5`` and ``distractors=True`` (a rare-predicate
    query's video also shows the object with its frequent predicate), one query per video's target event;
  * methods, trained 10 epochs each (``MomentTrainConfig(epochs=10)``, ``SQuiDNetConfig()`` defaults):
      - ``sliding window (floor)``: today's index: 4 s windows every 2 s, a window's vector the mean of the clips it
        overlaps, cosine with the query; VCMR ranks the corpus' windows, SVMR the GT video's, VR by best window;
      - ``NMR (no debiasing)``: SQuiDNet's naive branch trained with random negative videos, no debiasing;
      - ``SQuiDNet (selective debiasing)``: trained with SQuiD (the biased branch's top videos as the negatives
        of the queries the co-occurrence table marks as harmful-bias), the authors' inference (NMR's
        ``p(v) p_st p_ed``);
      - ``debiasing every query (not selective)``: the same, biased negatives for every query (``debias_all``);
      - ``SQuiDNet + inference subtraction (xmr's)``: the selective model, plus 0.5 x the biased branch's terms
        subtracted at inference for the queries its confounder marks as harmful (not in the paper).
  * reported: R@1 at IoU 0.5 / 0.7 for VCMR and SVMR, and VCMR / SVMR R@1@0.5 on rare-predicate queries (type
    ``vt``) and frequent ones (``v``); mean +- std over ``--seeds``.

    python benchmarks/moments.py [--seeds 0 1 2] [--epochs 10] [--out /tmp/xmr_moments_bench.json]
    python benchmarks/moments.py --merge s0.json s1.json s2.json   # seeds run as separate processes, one table
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from xmr.eval import vcmr  # noqa: E402
from xmr.synth.moments import MomentWorld  # noqa: E402
from xmr.train.moments import MomentData, MomentTrainConfig, evaluate, train_squidnet  # noqa: E402

WINDOW, STRIDE = 4.0, 2.0


def sliding_window_submission(split) -> dict:
    frames = split.frames / np.linalg.norm(split.frames, axis=-1, keepdims=True)
    v, t, _ = frames.shape
    cs = split.clip_seconds
    dur = t * cs
    starts = np.arange(0.0, max(dur - WINDOW, 0) + 1e-9, STRIDE)
    wins = [(s, min(s + WINDOW, dur)) for s in starts]
    clip_st = np.arange(t) * cs
    members = [np.flatnonzero((clip_st < e) & (clip_st + cs > s)) for s, e in wins]
    wvec = np.stack([frames[:, m].mean(axis=1) for m in members], axis=1)  # (V, W, D)
    wvec /= np.linalg.norm(wvec, axis=-1, keepdims=True)
    scores = np.einsum("vwd,qd->qvw", wvec, split.queries)  # (Q, V, W)
    gt_video = [split.events[e].video for e in split.query_events]
    out = {"video2idx": {f"v{i}": i for i in range(v)}, "VCMR": [], "SVMR": [], "VR": []}
    for q in range(len(split.queries)):
        flat = np.argsort(-scores[q], axis=None, kind="stable")[:100]
        out["VCMR"].append({"desc_id": q, "predictions": [
            [int(f // len(wins)), *wins[f % len(wins)], float(scores[q].flat[f])] for f in flat]})
        g = gt_video[q]
        order = np.argsort(-scores[q, g], kind="stable")
        out["SVMR"].append({"desc_id": q, "predictions": [[g, *wins[w], float(scores[q, g, w])] for w in order]})
        best = scores[q].max(axis=1)
        out["VR"].append({"desc_id": q, "predictions": [[int(i), 0, 0, float(best[i])]
                                                        for i in np.argsort(-best, kind="stable")[:100]]})
    return out


def summary(m: dict) -> dict:
    return {"VCMR R@1 0.5": m["VCMR"]["0.5-r1"], "VCMR R@1 0.7": m["VCMR"]["0.7-r1"],
            "SVMR R@1 0.5": m["SVMR"]["0.5-r1"], "SVMR R@1 0.7": m["SVMR"]["0.7-r1"],
            "VCMR rare": m["VCMR_by_type"]["vt-0.5-r1"], "VCMR frequent": m["VCMR_by_type"]["v-0.5-r1"],
            "SVMR rare": m["SVMR_by_type"]["vt-0.5-r1"], "SVMR frequent": m["SVMR_by_type"]["v-0.5-r1"]}


def run_seed(seed: int, epochs: int) -> dict:
    world = MomentWorld(world_seed=seed, predicate_weight=0.25, detail_weight=0.3)
    train = MomentData.from_split(world.sample(300, frequent_share=0.8, noise=0.8, seed=1000 + seed))
    test_split = world.sample(150, frequent_share=0.5, distractors=True, noise=0.8, seed=2000 + seed)
    test, gt = MomentData.from_split(test_split), test_split.ground_truth()
    res = {"sliding window (floor)": summary(vcmr(gt, sliding_window_submission(test_split)))}
    naive, _ = train_squidnet(train, {"seed": seed}, MomentTrainConfig(epochs=epochs, debias=False, seed=seed))
    res["NMR (no debiasing)"] = summary(evaluate(naive, test, debias=False, ground_truth=gt))
    model, _ = train_squidnet(train, {"seed": seed}, MomentTrainConfig(epochs=epochs, debias=True, seed=seed))
    res["SQuiDNet (selective debiasing)"] = summary(evaluate(model, test, debias=False, ground_truth=gt))
    every, _ = train_squidnet(train, {"seed": seed}, MomentTrainConfig(epochs=epochs, debias=True, debias_all=True,
                                                                       seed=seed))
    res["debiasing every query (not selective)"] = summary(evaluate(every, test, debias=False, ground_truth=gt))
    model.config = replace(model.config, debias_weight=0.5)
    res["SQuiDNet + inference subtraction (xmr's)"] = summary(evaluate(model, test, debias=True, ground_truth=gt))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default="/tmp/xmr_moments_bench.json")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="print one table from the --out files of earlier runs (same --epochs) instead of running")
    args = ap.parse_args()
    runs = {}
    if args.merge:
        for path in args.merge:
            d = json.loads(Path(path).read_text())
            runs.update({int(k): v for k, v in d["runs"].items()})
        args.seeds = sorted(runs)
        return table(runs, args)
    import torch

    torch.set_num_threads(1)
    for seed in args.seeds:
        t0 = time.time()
        runs[seed] = run_seed(seed, args.epochs)
        print(f"seed {seed}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        for name, row in runs[seed].items():
            print(f"  {name:38s} " + "  ".join(f"{k} {v:6.2f}" for k, v in row.items()), file=sys.stderr)
    return table(runs, args)


def table(runs: dict, args) -> int:
    methods = list(runs[args.seeds[0]])
    cols = list(runs[args.seeds[0]][methods[0]])
    print("| method | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    stats = {}
    for m in methods:
        vals = {c: np.array([runs[s][m][c] for s in args.seeds]) for c in cols}
        stats[m] = {c: (float(v.mean()), float(v.std())) for c, v in vals.items()}
        print(f"| {m} | " + " | ".join(f"{v.mean():.1f} ± {v.std():.1f}" for v in vals.values()) + " |")
    Path(args.out).write_text(json.dumps({"seeds": args.seeds, "epochs": args.epochs, "runs": runs,
                                          "mean_std": stats}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
