"""Indexing throughput of the default model: ``xmr index``'s images/s against the model's own forward pass and
against another checkout ("today's" code), side by side in one run.

Every measurement runs in its own subprocess (peak RSS is that process's own), in rounds that interleave the
methods, so load from other jobs on a shared machine falls on all of them alike:

* ``index``   : ``index_folder`` (what ``xmr index`` runs) on a copy of the images, after the model is loaded and has
                encoded one image (load time reported apart); ``--runtime`` selects ONNX Runtime or torch;
* ``forward`` : the model alone on pre-decoded, pre-processed tensors (all views of every image built first, then
                only ``probabilities_from_pixels`` is timed, in batches of ``--batch-size`` images);
* ``baseline``: ``index_folder`` of the checkout at ``--baseline-src`` (e.g. ``git archive <commit> src``);
* ``baseline_forward``: ``forward`` run on that checkout (its own model input: float32 views there, uint8 views
                here), so both overheads come from one run;
* ``prep`` / ``baseline_prep``: the CPU work the indexer adds per image, alone in one thread (decode at the
                model's draft size + ``preprocess_images``), timed by ``time.thread_time``: far less sensitive to
                other jobs than wall time. With the forward pass's CPU ms per image, ``prep / (prep + forward)`` is
                the overhead to expect when the cores are saturated and overlap is perfect.

    python benchmarks/index_speed.py --data ../shared/data/coco-mini --limit 80 --baseline-src /tmp/base/src
    python benchmarks/index_speed.py --data ../shared/data/coco-mini --methods index,forward   # no baseline
    python benchmarks/index_speed.py --data ../shared/data/coco-mini --limit 48 --rounds 3 \
        --methods index,forward,baseline,baseline_forward --baseline-src /tmp/base/src       # both overheads

Overhead = 1 - (index images/s) / (forward images/s), same runtime ("wall"); and, less sensitive to other jobs on a
shared machine, 1 - (forward CPU ms per image) / (index CPU ms per image), CPU time of every thread of the process
("CPU": the share of the indexer's work that is not the model).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXTS = {".jpg", ".jpeg", ".png"}


def _images(data: Path, limit: int | None) -> list[Path]:
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in EXTS)
    return files[:limit] if limit else files


def _worker(args) -> dict:
    """Runs inside the subprocess; prints one JSON line."""
    import numpy as np

    from xmr.encoders import create_encoder
    from xmr.index import index_folder

    files = _images(Path(args.data), args.limit)
    t0 = time.perf_counter()
    enc = create_encoder(args.model)
    enc.encode_images([str(files[0])], show_progress=False)  # warm-up: both towers / sessions built
    load_s = time.perf_counter() - t0
    out = {"method": args.worker, "model": args.model, "images": len(files), "load_s": round(load_s, 2),
           "runtime": getattr(enc, "runtime", "torch")}
    if args.worker in ("index", "baseline"):
        with tempfile.TemporaryDirectory(prefix="xmr-index-speed-") as tmp:
            folder = Path(tmp) / "images"
            folder.mkdir()
            for i, f in enumerate(files):  # symlinks would be skipped by the walker: real copies
                shutil.copy(f, folder / f"{i:05d}{f.suffix.lower()}")
            t0, c0 = time.perf_counter(), time.process_time()
            rep = index_folder(folder, Path(tmp) / "index", enc, batch_size=args.batch_size, show_progress=False)
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        if rep.added != len(files):
            raise SystemExit(f"indexed {rep.added} of {len(files)} images: {rep.skipped[:3]}")
    elif args.worker == "prep":  # decode + views, one thread, CPU time of this thread only
        from xmr.media.image import load_image

        draft = getattr(enc, "image_draft_size", None)
        t0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(3):
            for f in files:
                enc.preprocess_images([load_image(f, draft=draft)])
        sec, cpu = (time.perf_counter() - t0) / 3, (time.thread_time() - c0) / 3
    else:  # forward: the model alone on tensors built beforehand
        from xmr.media.image import load_image

        items = [enc.preprocess_images([load_image(f)])[0] for f in files]
        b = args.batch_size
        t0, c0 = time.perf_counter(), time.process_time()
        for s in range(0, len(items), b):
            x = np.stack(items[s : s + b])
            enc.probabilities_from_pixels(x.reshape(-1, *x.shape[2:]))
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    out.update(seconds=round(sec, 2), images_per_s=round(len(files) / sec, 2),
               cpu_ms_per_image=round(1000 * cpu / len(files), 1),
               peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    return out


def _run(method: str, args, runtime: str | None) -> dict:
    baseline = method.startswith("baseline")
    src = args.baseline_src if baseline else str(REPO / "src")
    method = {"baseline_forward": "forward", "baseline_prep": "prep"}.get(method, method)
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: compiled modules are cached
    if runtime:
        env["XMR_RUNTIME"] = runtime
    cmd = [sys.executable, __file__, "--worker", method, "--data", args.data, "--model", args.model,
           "--batch-size", str(args.batch_size)] + (["--limit", str(args.limit)] if args.limit else [])
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{method} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a folder of images (searched recursively), e.g. coco-mini")
    ap.add_argument("--limit", type=int, default=None, help="first N images (sorted by path)")
    ap.add_argument("--model", default="concept")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--methods", default="index,forward,baseline",
                    help="comma-separated: index, forward, index-torch, forward-torch, baseline, baseline_forward, "
                         "prep, baseline_prep")
    ap.add_argument("--baseline-src", help="src/ folder of the code to compare with (needed for 'baseline')")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (median reported)")
    ap.add_argument("--json", help="also write all runs here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)))
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if any(m.startswith("baseline") for m in methods) and not args.baseline_src:
        ap.error("the baseline methods need --baseline-src")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for _ in range(args.rounds):
        for m in methods:
            base, _, rt = m.partition("-")
            r = _run(base, args, rt or ("onnx" if not base.startswith("baseline") else None))
            r["load_avg"] = [round(x, 1) for x in os.getloadavg()]
            runs[m].append(r)
            print(json.dumps({"label": m, **r}), flush=True)
    med = {m: statistics.median(r["images_per_s"] for r in rs) for m, rs in runs.items()}
    print(f"\n{len(runs[methods[0]][0:1]) and runs[methods[0]][0]['images']} images, model {args.model}, batch "
          f"{args.batch_size}, {args.rounds} round(s), {os.cpu_count()} CPUs; median images/s:")
    for m in methods:
        rs = runs[m]
        line = (f"  {m:14s} {med[m]:7.2f} img/s   load {statistics.median(r['load_s'] for r in rs):5.1f} s   "
                f"peak RSS {max(r['peak_rss_mb'] for r in rs):5d} MB   load avg {rs[-1]['load_avg'][0]}")
        if "baseline" in med and not m.startswith("baseline"):
            line += f"   {med[m] / med['baseline']:.1f}x baseline"
        print(line)
    for ix, fw in (("index", "forward"), ("index-torch", "forward-torch"), ("baseline", "baseline_forward")):
        if ix in med and fw in med:
            cpu = {m: statistics.median(r["cpu_ms_per_image"] for r in runs[m]) for m in (ix, fw)}
            print(f"  overhead of {ix} vs {fw}: {100 * (1 - med[ix] / med[fw]):.1f} % (wall), "
                  f"{100 * (1 - cpu[fw] / cpu[ix]):.1f} % (CPU: {cpu[ix]:.1f} vs {cpu[fw]:.1f} ms per image)")
    for pr, fw in (("prep", "forward"), ("baseline_prep", "baseline_forward")):
        if pr in runs and fw in runs:
            cpu = {m: statistics.median(r["cpu_ms_per_image"] for r in runs[m]) for m in (pr, fw)}
            print(f"  {pr}: {cpu[pr]:.1f} ms CPU per image (decode + views, one thread); with {fw}'s "
                  f"{cpu[fw]:.1f}: {100 * cpu[pr] / (cpu[pr] + cpu[fw]):.1f} % overhead on saturated cores")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs, "median_images_per_s": med},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
