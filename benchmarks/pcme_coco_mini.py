"""PCME trained through ``xmr train`` on real data: adapters + PCME heads on frozen ``concept:zeroshot`` features,
trained on coco-mini train2017 (80 images, 400 captions), evaluated on val2017 (79 images, 395 captions, every
image with COCO instance labels) - against the deterministic counterpart (the same adapters with ``infonce``) and
PCME + DAA. 3 seeds, mean +- std. Small: quote as a check that the pieces work on real data, not as a COCO result.

Per run: R@1 both directions, PCME's PMRP (plausible matches from the instance labels, :func:`xmr.eval.pmrp`) and,
for the probabilistic models, the caption uncertainty against retrieval (:func:`xmr.eval.uncertainty
.uncertainty_bins`: R@1 of the least / most uncertain third of the captions, Spearman(σ, rank)).

    python benchmarks/pcme_coco_mini.py --data ../shared/data/coco-mini --out /tmp/pcme-coco
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

LOSSES = {"infonce": {}, "pcme": {}, "daa": {"beta": 1000.0}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="coco-mini folder (annotations/, train2017/, val2017/)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--model", default="concept:zeroshot")
    ap.add_argument("--losses", nargs="+", default=list(LOSSES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--init-log-sigma", type=float, default=None,
                    help="pcme / daa: initial log sigma of the uncertainty heads (default: the loss's)")
    args = ap.parse_args(argv)
    if args.init_log_sigma is not None:
        for k in ("pcme", "daa"):
            LOSSES[k] = {**LOSSES[k], "init_log_sigma": args.init_log_sigma}
    import torch

    torch.set_num_threads(1)
    from xmr.data import load_dataset
    from xmr.data.labels import read_coco_instances
    from xmr.encoders import create_encoder
    from xmr.encoders.trained import load_trained_module
    from xmr.eval import evaluate_sims, pmrp
    from xmr.eval.ranks import ranks_t2i
    from xmr.eval.uncertainty import uncertainty_bins
    from xmr.train import TrainConfig, train
    from xmr.train.features import cached_features

    t0 = time.perf_counter()
    enc = create_encoder(args.model, device="cpu")
    val = load_dataset(f"coco:{args.data}", split="val2017")
    vi, vt, _ = cached_features(enc, val, show_progress=False)
    inst = read_coco_instances(os.path.join(args.data, "annotations", "instances_val2017.json"),
                               image_root=os.path.join(args.data, "val2017"))
    row = {m: i for i, m in enumerate(inst.media)}
    labels = inst.labels[[row[m] for m in val.media]]
    t2i = np.asarray(val.text_to_item)
    results: dict[str, list[dict]] = {}
    sims0 = vt @ vi.T  # the frozen model itself, the starting point of every run
    r0, pm0 = evaluate_sims(sims0, t2i), pmrp(sims0, t2i, labels)
    results["frozen " + args.model] = [{"t2i R@1": r0["t2i"]["R@1"], "i2t R@1": r0["i2t"]["R@1"],
                                        "t2i PMRP": pm0["t2i"]["PMRP"], "i2t PMRP": pm0["i2t"]["PMRP"]}]
    for loss in args.losses:
        for seed in args.seeds:
            d = args.out / f"{loss}-s{seed}"
            shutil.rmtree(d, ignore_errors=True)
            cfg = TrainConfig(dataset=f"coco:{args.data}", split="train2017", eval_split=None, model=args.model,
                              loss=loss, loss_config=LOSSES.get(loss, {}), epochs=args.epochs, batch_size=32,
                              lr=args.lr, seed=seed)
            t = time.perf_counter()
            train(cfg, d, show_progress=False, encoder=enc, keep_checkpoints=1)
            wall = time.perf_counter() - t
            _, _, m = load_trained_module(d)
            with torch.no_grad():
                img = m.encode_image(torch.from_numpy(vi)).numpy()
                txt = m.encode_text(torch.from_numpy(vt)).numpy()
            sims = txt @ img.T
            r = evaluate_sims(sims, t2i)
            pm = pmrp(sims, t2i, labels)
            out = {"t2i R@1": r["t2i"]["R@1"], "i2t R@1": r["i2t"]["R@1"], "t2i PMRP": pm["t2i"]["PMRP"],
                   "i2t PMRP": pm["i2t"]["PMRP"], "train s": wall}
            if "uncertainty" in m.heads:
                with torch.no_grad():
                    u = m.heads["uncertainty"]["text"](torch.from_numpy(vt)).mean(-1).numpy()
                b = uncertainty_bins(u, ranks_t2i(sims, t2i), bins=3)
                out.update({"R@1 low σ third": b["bins"][0]["R@1"], "R@1 high σ third": b["bins"][-1]["R@1"],
                            "Spearman(σ, rank)": b["spearman_rank"], "σ spread (std of mean log σ)":
                            b["log_sigma"]["std"]})
            results.setdefault(loss, []).append(out)
            print(f"{loss} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in out.items()), flush=True)
    keys = []
    for rs in results.values():
        keys += [k for k in rs[0] if k not in keys]
    print("\n| loss | " + " | ".join(keys) + " |\n|---|" + "---:|" * len(keys))
    for loss, rs in results.items():
        cells = []
        for k in keys:
            xs = [r[k] for r in rs if k in r and r[k] is not None]
            cells.append(f"{np.mean(xs):.2f} ± {np.std(xs):.2f}" if xs else "-")
        print(f"| {loss} | " + " | ".join(cells) + " |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
