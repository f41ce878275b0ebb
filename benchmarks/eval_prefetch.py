"""``xmr eval``'s image encoding with and without the prefetch workers, side by side in one process.

Rounds interleave the two paths (``--prefetch-workers 0``: decode then encode, batch by batch, as before; default:
worker threads decode and build the model's views of the next batch while the model encodes this one), on the same
loaded model, so load from other jobs falls on both alike. Each round checks that the metrics are identical.

    python benchmarks/eval_prefetch.py --dataset coco:../shared/data/coco-mini --limit 64 --rounds 2

Prints one JSON object: per-round encode seconds of each path, images/s, the ratio, and the load average
(``os.getloadavg``) before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="coco:../shared/data/coco-mini")
    ap.add_argument("--model", default="concept")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=None, help="prefetch workers (default: one per core, at most 4)")
    args = ap.parse_args()

    from xmr.data import load_dataset
    from xmr.encoders import create_encoder
    from xmr.eval import evaluate_model
    from xmr.eval._images import default_workers

    ds = load_dataset(args.dataset)
    if args.limit:
        ds = ds.subset(args.limit)
    enc = create_encoder(args.model)
    enc.encode_images([ds.media[0]], show_progress=False)  # warm-up: sessions built before timing
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"sequential": [], "prefetch": []}
    metrics = None
    t_all = time.perf_counter()
    for r in range(args.rounds):
        for name, workers in (("sequential", 0), ("prefetch", args.workers)) if r % 2 == 0 else \
                (("prefetch", args.workers), ("sequential", 0)):
            res = evaluate_model(ds, enc, batch_size=args.batch_size, show_progress=False, prefetch_workers=workers)
            times[name].append(res["timing"]["encode_images_s"])
            m = (res["t2i"], res["i2t"])
            if metrics is None:
                metrics = m
            elif m != metrics:
                raise SystemExit(f"metrics differ between the paths: {m} vs {metrics}")
    n = len(ds.media)
    seq, pre = statistics.median(times["sequential"]), statistics.median(times["prefetch"])
    print(json.dumps({
        "dataset": args.dataset, "model": enc.spec, "images": n, "batch_size": args.batch_size,
        "workers": args.workers or default_workers(), "cores": os.cpu_count(),
        "encode_s": times, "images_per_s": {"sequential": round(n / seq, 2), "prefetch": round(n / pre, 2)},
        "speedup_median": round(seq / pre, 3), "metrics_identical": True,
        "t2i": metrics[0], "i2t": metrics[1],
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()], "wall_s": round(time.perf_counter() - t_all, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
