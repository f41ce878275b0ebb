"""Multi-query fusion and two-stage re-ranking on real image-text data (COCO-mini by default).

Encodes the train and val splits once with the dual encoder (``--model``), then:

1. multi-query: groups of N captions per image (xmr.multiquery.group_captions) fused by mean-sim, mean-emb, max
   and a learned weighting trained on the train split's captions; text->image metrics on val (N=1 is the plain
   single-caption baseline). Same numbers as ``xmr eval --dataset coco:DATA:val2017 --queries-per-target N
   --fuse F``;
2. re-ranking: a cross-attention matcher (xattn, over the ``tiny`` encoder's tokens) trained on the train split
   with hard negatives, re-scoring the dual encoder's top-K on val for several K: R@k before/after, pairs scored,
   seconds. Same as ``xmr eval ... --rerank xattn:DIR --rerank-k K``.

    python benchmarks/rerank.py --data ../shared/data/coco-mini            # concept dual encoder
    python benchmarks/rerank.py --data tests/fixtures/coco_tiny --model tiny --train-split train2017 --val-split val2017
"""
from __future__ import annotations

import argparse
import tempfile
import time



def fmt(m: dict) -> str:
    return f"{m['R@1']:.1f} | {m['R@5']:.1f} | {m['R@10']:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/coco-mini", help="a COCO-layout folder")
    p.add_argument("--model", default="concept")
    p.add_argument("--train-split", default="train2017")
    p.add_argument("--val-split", default="val2017")
    p.add_argument("--ns", default="1,2,3,5", help="queries per target")
    p.add_argument("--ks", default="5,10,20", help="re-ranking depths")
    p.add_argument("--epochs", type=int, default=20, help="matcher training epochs")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: small models run faster on one thread on a busy machine)")
    a = p.parse_args()

    import torch

    from xmr import create_encoder
    from xmr.data import load_dataset
    from xmr.eval import evaluate_sims
    from xmr.multiquery import fuse_sims, group_captions, train_query_weighting
    from xmr.rerank import rerank_dense, train_cross_matcher

    torch.set_num_threads(a.threads)
    train = load_dataset(f"coco:{a.data}:{a.train_split}")
    val = load_dataset(f"coco:{a.data}:{a.val_split}")
    enc = create_encoder(a.model)
    t0 = time.perf_counter()
    tr_img, tr_txt = enc.encode_images(train.media), enc.encode_text(train.texts)
    va_img, va_txt = enc.encode_images(val.media), enc.encode_text(val.texts)
    print(f"encoded {len(train)}+{len(val)} images, {train.num_texts}+{val.num_texts} texts with {a.model} "
          f"in {time.perf_counter() - t0:.1f} s\n")

    print(f"### Multi-query retrieval, {a.model}, {val.name} ({len(val)} images), text->image\n")
    print("| N | fusion | queries | R@1 | R@5 | R@10 |\n| ---: | --- | ---: | ---: | ---: | ---: |")
    for n in map(int, a.ns.split(",")):
        groups, gi = group_captions(val.text_offsets, n)
        fusions = ["mean-sim"] if n == 1 else ["mean-sim", "mean-emb", "max", "learned"]
        for f in fusions:
            model = None
            if f == "learned":
                t1 = time.perf_counter()
                model = train_query_weighting(tr_txt, train.text_offsets, tr_img, n=n, epochs=30, seed=0,
                                              encoder=a.model)
                f_label = f"learned (trained {time.perf_counter() - t1:.1f} s)"
            else:
                f_label = f
            s = fuse_sims(va_txt[groups], va_img, f, model=model)
            m = evaluate_sims(s, gi, allow_textless_items=True)["t2i"]
            print(f"| {n} | {f_label} | {len(groups)} | {fmt(m)} |")

    tiny = create_encoder("tiny")
    t1 = time.perf_counter()
    rr = train_cross_matcher(tiny, train.texts, train.media, train.text_to_item, negatives=3, hard_k=8,
                             epochs=a.epochs, seed=0)
    train_s = time.perf_counter() - t1
    with tempfile.TemporaryDirectory() as d:
        rr.save(d)  # what xmr eval --rerank xattn:DIR would load
    sims = va_txt @ va_img.T
    base = evaluate_sims(sims, val.text_to_item)["t2i"]
    print(f"\n### Two-stage re-ranking, dual {a.model} -> xattn matcher over tiny tokens "
          f"(trained on {train.name}: {train.num_texts} captions, {a.epochs} epochs, {train_s:.1f} s)\n")
    print("| K | alpha | pairs scored | cross-encoder s | R@1 | R@5 | R@10 | R@1 gain |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| - | - | 0 | 0 | {fmt(base)} | - |")
    for k in map(int, a.ks.split(",")):
        for alpha in (0.0, 0.9):
            out, info = rerank_dense(sims, val.texts, val.media, rr, k=k, alpha=alpha)
            m = evaluate_sims(out, val.text_to_item)["t2i"]
            print(f"| {k} | {alpha} | {info['pairs_scored']} | {info['cross_s']:.1f} | {fmt(m)} | "
                  f"{m['R@1'] - base['R@1']:+.1f} |")


if __name__ == "__main__":
    main()
