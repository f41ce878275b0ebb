"""A real (small) training run: adapters on frozen ``concept:zeroshot`` features, trained on coco-mini train2017 captions
(80 images, 400 captions), evaluated on val2017 (79 images, 395 captions) every epoch — 3 seeds per learning rate,
mean +- std, against the frozen model evaluated in the same run (epoch 0), plus the cost per epoch.

Usage::

    python benchmarks/train_coco_mini.py --data ../shared/data/coco-mini --out /tmp/coco-train --model concept:zeroshot

The frozen features are computed once (the first run; its wall time is the "feature cache" cost) and read from the
cache afterwards. One torch thread (the machine is shared).
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="coco-mini folder (annotations/, train2017/, val2017/)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--model", default="concept:zeroshot",
                    help="frozen encoder (default concept:zeroshot, the training-free concept model)")
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 1e-3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from xmr.encoders import create_encoder
    from xmr.train import TrainConfig, train

    t0 = time.perf_counter()
    enc = create_encoder(args.model, device="cpu")
    print(f"model load {time.perf_counter() - t0:.1f} s", flush=True)
    rows = {}
    for lr in args.lrs:
        for seed in args.seeds:
            d = args.out / f"lr{lr:g}-s{seed}"
            shutil.rmtree(d, ignore_errors=True)
            cfg = TrainConfig(dataset=f"coco:{args.data}", split="train2017", eval_split="val2017", model=args.model,
                              loss="infonce", epochs=args.epochs, batch_size=32, lr=lr, seed=seed)
            t = time.perf_counter()
            res = train(cfg, d, show_progress=False, encoder=enc, keep_checkpoints=1)
            wall = time.perf_counter() - t
            h = res.history
            rows[(lr, seed)] = h
            print(f"lr {lr:g} seed {seed}: rsum {h[0]['rsum']:.1f} (frozen) -> {h[-1]['rsum']:.1f}, "
                  f"wall {wall:.1f} s", flush=True)
    keys = ("t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10", "rsum")

    def ms(xs):
        return f"{np.mean(xs):.1f} ± {np.std(xs):.1f}"

    print("\n| model | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    first = rows[(args.lrs[0], args.seeds[0])][0]
    print("| frozen " + args.model + " (epoch 0) | " + " | ".join(f"{first[k]:.1f}" for k in keys) + " |")
    for lr in args.lrs:
        hs = [rows[(lr, s)] for s in args.seeds]
        print(f"| + adapters, infonce, lr {lr:g}, {args.epochs} epochs | "
              + " | ".join(ms([h[-1][k] for h in hs]) for k in keys) + " |")
        best = [max(r["rsum"] for r in h[1:]) for h in hs]
        print(f"|   (best epoch's rsum: {ms(best)}) |" + " |" * len(keys))
    train_s = [r["train_s"] for h in rows.values() for r in h[1:]]
    eval_s = [r["eval_s"] for h in rows.values() for r in h[1:]]
    print(f"\ncost per epoch: train {np.mean(train_s):.3f} ± {np.std(train_s):.3f} s, evaluation "
          f"{np.mean(eval_s):.3f} ± {np.std(eval_s):.3f} s (features cached); peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
