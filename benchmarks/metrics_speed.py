"""Speed and memory of xmr's counting metrics vs a naive full-argsort implementation.

Both compute the ``standard`` protocol (text->item and item->text) on the same random float32 matrix laid out
like COCO 5k (5 texts per item), each in its own subprocess so that time and peak memory are clean; the
parent checks that both give identical ranks and metrics and prints a markdown table.

    python benchmarks/metrics_speed.py            # COCO 5k: 25,000 x 5,000
    python benchmarks/metrics_speed.py --small    # 5,000 x 1,000, a few seconds
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_data(num_texts: int, num_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random scores with some signal on the matches, so ranks spread from 0 to the tail."""
    rng = np.random.default_rng(seed)
    sims = rng.random((num_texts, num_items), dtype=np.float32)
    text_to_item = np.repeat(np.arange(num_items), num_texts // num_items)
    sims[np.arange(num_texts), text_to_item] += rng.random(num_texts, dtype=np.float32) * np.float32(0.3)
    return sims, text_to_item


def naive_ranks(sims: np.ndarray, text_to_item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``standard`` ranks the way reference code gets them: argsort whole matrices, then locate the match.

    Ties are resolved exactly as ``standard`` does (every non-matching candidate tied with the match counts
    against it) by locating the last sorted position that still scores >= the match."""
    num_texts, num_items = sims.shape
    gt = sims[np.arange(num_texts), text_to_item]

    # text -> item: sort every row (a num_texts x num_items index matrix)
    order = np.argsort(-sims, axis=1)
    neg_sorted = -np.take_along_axis(sims, order, axis=1)  # ascending
    del order
    t2i = np.array([np.searchsorted(neg_sorted[t], -gt[t], side="right") - 1 for t in range(num_texts)])
    del neg_sorted

    # item -> text: sort every column over all texts; rank of the item's best text
    best = np.full(num_items, -np.inf, dtype=np.float64)
    np.maximum.at(best, text_to_item, gt)
    best_ties = np.bincount(text_to_item, weights=(gt == best[text_to_item]), minlength=num_items).astype(np.int64)
    cols = np.ascontiguousarray(sims.T)
    order = np.argsort(-cols, axis=1)
    neg_sorted = -np.take_along_axis(cols, order, axis=1)
    del order, cols
    at_least = np.array([np.searchsorted(neg_sorted[v], -best[v], side="right") for v in range(num_items)])
    i2t = at_least - best_ties  # non-matching texts scoring >= the best matching one
    return t2i, i2t


def worker(method: str, args) -> None:
    from xmr.eval import evaluate_sims, metrics_from_ranks, ranks_i2t, ranks_t2i

    sims, text_to_item = make_data(args.texts, args.items, args.seed)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    if method == "naive":
        r_t2i, r_i2t = naive_ranks(sims, text_to_item)
        result = {"t2i": metrics_from_ranks(r_t2i), "i2t": metrics_from_ranks(r_i2t)}
    else:
        result = evaluate_sims(sims, text_to_item, "standard", chunk_size=args.chunk_size)
    seconds = time.perf_counter() - start
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if method == "xmr":  # ranks for the equality check, outside the timed and measured part
        r_t2i = ranks_t2i(sims, text_to_item, chunk_size=args.chunk_size)
        r_i2t = ranks_i2t(sims, text_to_item, chunk_size=args.chunk_size)
    np.savez(args.out, t2i=r_t2i, i2t=r_i2t)
    print(json.dumps({"seconds": seconds, "rss_before_kib": rss_before, "rss_peak_kib": rss_peak,
                      "metrics": result}))


def run(method: str, args, tmp: Path) -> dict:
    out = tmp / f"{method}.npz"
    cmd = [sys.executable, __file__, "--worker", method, "--texts", str(args.texts), "--items", str(args.items),
           "--seed", str(args.seed), "--out", str(out)]
    if args.chunk_size:
        cmd += ["--chunk-size", str(args.chunk_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{method} worker failed:\n{proc.stderr}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["ranks"] = dict(np.load(out))
    return info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", type=int, default=25_000)
    p.add_argument("--items", type=int, default=5_000)
    p.add_argument("--small", action="store_true", help="5,000 texts x 1,000 items")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=None, help="rows per block for xmr (default: automatic)")
    p.add_argument("--worker", choices=["naive", "xmr"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.small:
        args.texts, args.items = 5_000, 1_000
    if args.texts % args.items:
        p.error("--texts must be a multiple of --items (same number of texts per item)")
    if args.worker:
        return worker(args.worker, args)

    with tempfile.TemporaryDirectory() as tmp:
        results = {m: run(m, args, Path(tmp)) for m in ("naive", "xmr")}
    naive, ours = results["naive"], results["xmr"]
    for direction in ("t2i", "i2t"):
        np.testing.assert_array_equal(ours["ranks"][direction], naive["ranks"][direction])
    assert ours["metrics"] == naive["metrics"], (ours["metrics"], naive["metrics"])

    input_mib = args.texts * args.items * 4 / 2**20
    print(f"sims: {args.texts:,} x {args.items:,} float32 ({input_mib:,.0f} MiB), "
          f"{args.texts // args.items} texts per item, protocol 'standard'; ranks and metrics identical\n")
    print("| method | time (s) | peak RSS (MiB) | peak above input (MiB) | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, label in (("naive", "naive full argsort"), ("xmr", "xmr counting (chunked)")):
        r = results[name]
        extra = (r["rss_peak_kib"] - r["rss_before_kib"]) / 1024
        print(f"| {label} | {r['seconds']:.2f} | {r['rss_peak_kib'] / 1024:,.0f} | {extra:,.0f} | "
              f"{naive['seconds'] / r['seconds']:.1f}x |")
    m = ours["metrics"]
    print(f"\nt2i R@1/5/10 = {m['t2i']['R@1']:.2f}/{m['t2i']['R@5']:.2f}/{m['t2i']['R@10']:.2f}, "
          f"i2t R@1/5/10 = {m['i2t']['R@1']:.2f}/{m['i2t']['R@5']:.2f}/{m['i2t']['R@10']:.2f}")


if __name__ == "__main__":
    main()
