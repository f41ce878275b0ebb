"""Retrieval quality on the 159 captioned COCO images of coco-mini (795 captions), with the real eval pipeline.

    python benchmarks/coco_mini.py --data ../shared/data/coco-mini                 # every available model
    python benchmarks/coco_mini.py --data ../shared/data/coco-mini --ablation      # the concept-model ablation
    python benchmarks/coco_mini.py --data ../shared/data/coco-mini --models concept hf:/path/to/clip

Prints a markdown table (t2i R@1/5/10, i2t R@1/5/10, rsum, image-encode time) and writes JSON with --out.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco-mini"


def ablation_rows():
    """Cumulative steps from the first prototype to the default, then backbone / speed variants."""
    from xmr.encoders.concept import CONCEPT_PRESETS

    proto = CONCEPT_PRESETS.get("prototype")
    default = CONCEPT_PRESETS.get("zeroshot")  # the training-free model this ablation built up
    steps = [
        ("prototype: class names, cosine, ImageNet norm, centre crop", proto),
        ("+ Lite's own pixel normalisation (mean=std=0.5)", replace(proto, normalization="tf")),
        ("+ class texts: 6 prompts + synonyms + descriptions", replace(proto, normalization="tf",
                                                                      class_text=default.class_text)),
        ("+ Hellinger (sqrt) concept space, image temperature 1", replace(default, views="center")),
        ("+ multi-crop views (whole, 2x2 grid, flip) = default", default),
        ("default with Lite1 backbone", replace(default, backbone="lite1")),
        ("default with Lite2 backbone (concept:lite2)", replace(default, backbone="lite2")),
        ("default with image temperature 2 (best t2i on the grid; i2t collapses)", replace(default, image_temperature=2.0)),
        ("text space: image as expected class-text embedding", replace(default, space="text")),
    ]
    return steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="coco-mini folder (annotations/, train2017/, val2017/)")
    ap.add_argument("--split", default=None, help="only this split, e.g. val2017")
    ap.add_argument("--models", nargs="*", default=None, help="encoder specs (default: concept, concept:fast)")
    ap.add_argument("--ablation", action="store_true", help="run the concept ablation instead")
    ap.add_argument("--protocol", default="standard")
    ap.add_argument("--out", default=None, help="write all results as JSON here")
    args = ap.parse_args()

    from xmr.data import load_dataset
    from xmr.encoders import create_encoder
    from xmr.encoders.concept import ConceptEncoder
    from xmr.eval import evaluate_model

    ds = load_dataset(f"coco:{args.data}", split=args.split, check_media=True)
    print(f"dataset {ds.name}: {len(ds)} images, {ds.num_texts} captions, protocol {args.protocol}\n")
    if args.ablation:
        jobs = [(label, (lambda cfg=cfg: ConceptEncoder(cfg))) for label, cfg in ablation_rows()]
    else:
        jobs = [(spec, (lambda spec=spec: create_encoder(spec))) for spec in (args.models or ["concept", "concept:fast"])]
    print("| model | t2i R@1 | R@5 | R@10 | i2t R@1 | R@5 | R@10 | rsum | encode images (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = []
    for label, make in jobs:
        t0 = time.perf_counter()
        enc = make()
        if not enc.spec:
            enc.spec = "concept(custom)"
        r = evaluate_model(ds, enc, protocol=args.protocol, show_progress=False)
        r["label"], r["load_s"] = label, round(time.perf_counter() - t0, 1)
        results.append(r)
        t, i = r["t2i"], r["i2t"]
        print(f"| {label} | {t['R@1']:.1f} | {t['R@5']:.1f} | {t['R@10']:.1f} | {i['R@1']:.1f} | {i['R@5']:.1f} | "
              f"{i['R@10']:.1f} | {r['rsum']:.1f} | {r['timing']['encode_images_s']:.1f} |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
