"""Fine-tuning modes of ``xmr train --mode finetune`` on ``xmr synth images`` (docs/training.md): whole, last:1,
projections, LoRA — retrieval after fine-tuning, trainable parameters, seconds per epoch; 3 seeds, mean +- std.

The LoRA paper's claim (Hu et al. 2022): adapting a pretrained model with low-rank updates of the attention weights
reaches about the quality of full fine-tuning with a small fraction of the trainable parameters.

No pretrained CLIP can be downloaded here, so the "pretrained" start is made in the same script: a tiny random CLIP
(transformers ``CLIPModel``, ViT 32 px / patch 8, width 32, 2 blocks per tower; tests/_tiny_models.py) trained
``--pre-epochs`` epochs (whole, InfoNCE, lr ``--pre-lr``) on one synthetic set (seed 100 + s) with ``--pre-noise``
of its captions swapped (a weaker start that knows the world in part), saved with ``save_pretrained`` and then
fine-tuned in each mode on **another** synthetic set (seed 200 + s, other pictures of the same world) and evaluated
on that set's test split. Small and synthetic: it shows what each mode trains and costs, not ImageNet-scale numbers.

Usage::

    python benchmarks/finetune_modes.py --out /tmp/ftm [--seeds 0 1 2] [--epochs 10] [--pre-epochs 30] [--n 600]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

MODES = {  # --finetune -> (learning rate, extra settings)
    "whole": (1e-3, {}),
    "last:1": (1e-3, {}),
    "projections": (1e-3, {}),
    "lora": (5e-3, {"r": 4, "alpha": 8}),
}


def _rsum(row: dict) -> float:
    return float(row["rsum"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--pre-epochs", type=int, default=4)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--pre-noise", type=float, default=0.5, help="share of swapped captions in the pretraining set")
    ap.add_argument("--pre-lr", type=float, default=1e-3)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    from _tiny_models import build

    from xmr.encoders import create_encoder
    from xmr.synth.images import generate_images
    from xmr.train import TrainConfig, train
    from xmr.train.finetune import FinetuneModel, count

    out = Path(args.out)
    results: dict[str, list] = {m: [] for m in ["start", *MODES]}
    params: dict[str, tuple[int, int]] = {}
    for s in args.seeds:
        d = out / f"seed{s}"
        shutil.rmtree(d, ignore_errors=True)
        a = generate_images(d / "setA", n=args.n, seed=100 + s, noise=args.pre_noise)
        b = generate_images(d / "setB", n=args.n, seed=200 + s)
        build("clip", d / "random", seed=s)
        pre = train(TrainConfig(dataset=f"manifest:{a}", model=f"hf:{d / 'random'}", mode="finetune", epochs=args.pre_epochs,
                                batch_size=32, lr=args.pre_lr, seed=s, eval_split=None), d / "pre", show_progress=False)
        enc = create_encoder(f"trained:{pre.out}")
        enc.model.save_pretrained(d / "pretrained")
        enc.tokenizer.save_pretrained(d / "pretrained")
        enc.image_processor.save_pretrained(d / "pretrained")
        start = f"hf:{d / 'pretrained'}"
        for how, (lr, lora) in MODES.items():
            t = time.perf_counter()
            res = train(TrainConfig(dataset=f"manifest:{b}", model=start, mode="finetune", finetune=how, lora=lora,
                                    epochs=args.epochs, batch_size=32, lr=lr, seed=s), d / how.replace(":", ""),
                        show_progress=False)
            if s == args.seeds[0]:
                params[how] = count(FinetuneModel(start, how, lora, s))
            if how == "whole":
                results["start"].append(_rsum(res.history[0]))
            results[how].append(_rsum(res.history[-1]))
            sec = float(np.mean([r["train_s"] for r in res.history[1:]]))
            results.setdefault(f"{how}_s", []).append(sec)
            print(f"seed {s} {how}: rsum {res.history[0]['rsum']} -> {res.history[-1]['rsum']} "
                  f"({time.perf_counter() - t:.1f} s)", flush=True)
    print(f"\n{len(args.seeds)} seeds, {args.epochs} epochs, n {args.n}; rsum max 600\n")
    print("| --finetune | trainable / total parameters | rsum after fine-tuning | s / epoch |")
    print("|---|---|---|---|")
    st = np.asarray(results["start"])
    print(f"| (pretrained start) | - | {st.mean():.1f} ± {st.std():.1f} | - |")
    for how in MODES:
        v, sec = np.asarray(results[how]), np.asarray(results[f"{how}_s"])
        tr, tot = params[how]
        print(f"| {how} | {tr:,} / {tot:,} ({100 * tr / tot:.1f} %) | {v.mean():.1f} ± {v.std():.1f} | "
              f"{sec.mean():.2f} |")
    (out / "results.json").write_text(json.dumps({"results": results, "params": params, "args": vars(args)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
