"""Composed queries on held-out attribute edits: does composing a reference image with a modification text beat the
image alone and the text alone, and do the learned composers (TIRG, JVSM) beat the training-free fusion?

World: ``xmr synth edits`` (:mod:`xmr.synth.edits`): one coloured shape per image; a query changes one attribute of
its reference ("make it red", "change the circle to a square", "make it larger", "move it to the top"); the test
targets have (colour, shape) pairs never seen in training (3 of 12 held out, drawn per seed). Frozen encoder: the
default ``concept`` model (features cached by content). Gallery: the test split's images; a result is correct when
it has the target's four attributes; the reference is taken out of its own ranking (:mod:`xmr.eval.composed`).

Methods: ``image`` (reference embedding), ``text`` (modification embedding), ``fusion`` (their mean: today's
``xmr search --image A "TEXT"``), ``tirg`` and ``jvsm`` (``xmr train-compose``, same epochs / batch / lr / hidden,
seed = data seed), and ``jvsm-no-matching``: JVSM without its composed-query-to-description term. Each seed draws a new world (images, held-out pairs, triplets) and trains new composers.

    OMP_NUM_THREADS=1 python benchmarks/composed.py --seeds 0 1 2 --out benchmarks/results/composed.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from xmr.data.composed import load_composed
from xmr.encoders import create_encoder
from xmr.eval.composed import evaluate_composed_embeddings
from xmr.synth.edits import generate_edits
from xmr.train.compose import ComposeTrainConfig, encode_dataset, train_composer

METHODS = ("image", "text", "fusion", "tirg", "jvsm", "jvsm-no-matching")
#: learned rows: method -> (composer, its config overrides); jvsm-no-matching is the ablation without JVSM's
#: composed-query-to-target-description term (visual + semantic composition only)
LEARNED = {"tirg": ("tirg", {}), "jvsm": ("jvsm", {}), "jvsm-no-matching": ("jvsm", {"matching_weight": 0.0})}
KEYS = ("R@1", "R@10")


def run_seed(seed: int, encoder, work: Path, n: int, epochs: int) -> dict:
    d = work / f"edits-{seed}"
    generate_edits(d, n=n, seed=seed)
    test = load_composed(f"edits:{d}:test")
    g, t, _ = encode_dataset(encoder, test)
    out = {m: evaluate_composed_embeddings(test, g, t, m) for m in ("image", "text", "fusion")}
    for name, (composer, overrides) in LEARNED.items():
        t0 = time.perf_counter()
        cfg = ComposeTrainConfig(dataset=f"edits:{d}", composer=composer, model=encoder.spec, epochs=epochs,
                                 seed=seed, eval_split=None, composer_config=overrides)
        res = train_composer(cfg, work / f"{name}-{seed}", encoder=encoder)
        out[name] = evaluate_composed_embeddings(test, g, t, "composer", res.composer)
        out[name]["train_s"] = round(time.perf_counter() - t0, 1)
    info = json.loads((d / "synth.json").read_text())
    out["world"] = {k: info[k] for k in ("held_out", "train_triplets", "test_triplets", "test_images")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=800, help="images per world (default 800)")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--model", default="concept")
    ap.add_argument("--out", default=None, help="write the per-seed and summary numbers as JSON here")
    args = ap.parse_args()
    enc = create_encoder(args.model)
    per_seed = {}
    with tempfile.TemporaryDirectory() as tmp:
        for s in args.seeds:
            per_seed[s] = run_seed(s, enc, Path(tmp), args.n, args.epochs)
            print(f"seed {s}: " + "; ".join(f"{m} " + " ".join(f"{k} {per_seed[s][m][k]:.2f}" for k in KEYS)
                                            for m in METHODS), flush=True)
    summary = {m: {k: (round(float(np.mean([per_seed[s][m][k] for s in args.seeds])), 2),
                       round(float(np.std([per_seed[s][m][k] for s in args.seeds])), 2)) for k in KEYS}
               for m in METHODS}
    print(f"\n{len(args.seeds)} seeds, mean ± std (percent), {args.model}, n={args.n}, {args.epochs} epochs")
    print(f"{'method':<8} " + " ".join(f"{k:>14}" for k in KEYS))
    for m in METHODS:
        print(f"{m:<8} " + " ".join(f"{summary[m][k][0]:7.2f} ± {summary[m][k][1]:4.2f}" for k in KEYS))
    best_single = {k: max(summary["image"][k][0], summary["text"][k][0]) for k in KEYS}
    for m in ("fusion", *LEARNED):
        beats = all(summary[m][k][0] > best_single[k] for k in KEYS)
        print(f"{m} beats both image only and text only on R@1 and R@10: {'yes' if beats else 'no'}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "per_seed": per_seed, "summary": summary},
                                             indent=2) + "\n")


if __name__ == "__main__":
    main()
