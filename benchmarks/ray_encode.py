"""Encoding real photos on Ray vs in one process: images/s, peak memory, identical vectors.

    python benchmarks/ray_encode.py --data ../shared/data --n 300            # 200 Flickr8k + 100 COCO photos, concept
    python benchmarks/ray_encode.py --data ../shared/data --n 300 --model tiny

Runs, each in its own process (peak memory = the largest sum of RSS over the process and all its descendants,
Ray's GCS / raylet / workers included, sampled every 0.2 s), on the same folder of photos:

- ``index``        ``xmr index`` (the plain indexer, the baseline)
- ``embed``        ``xmr embed`` without Ray (the same shard worker, in one process)
- ``embed-ray1``   ``xmr embed --ray --workers 1`` (a local Ray, Ray Data actor pool of 1)
- ``embed-ray2``   ``xmr embed --ray --workers 2``
- ``index-ray2``   ``xmr index --ray --workers 2`` (the indexer encoding through 2 Ray actors)

Wall time includes starting Python, Ray and the model(s): what a user waits for. Every run's vectors are compared
with the plain indexer's, by image path (max abs difference; embed runs store float32 here). Prints a markdown
table and the machine load (``os.getloadavg``) before and after; ``--out`` writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RUNS = ("index", "embed", "embed-ray1", "embed-ray2", "index-ray2")


def gather_photos(data: Path, n: int, dest: Path) -> list[Path]:
    """Symlink the first 2n/3 Flickr8k-dev photos and n/3 coco-mini val/train photos (sorted names) into ``dest``."""
    flickr = sorted((data / "flickr8k-dev" / "images").glob("*.jpg"))
    coco = sorted((data / "coco-mini" / "val2017").glob("*.jpg")) + sorted((data / "coco-mini" / "train2017").glob("*.jpg"))
    n_f = min(len(flickr), (2 * n) // 3)
    picked = flickr[:n_f] + coco[: n - n_f]
    if len(picked) < n:
        raise SystemExit(f"only {len(picked)} photos under {data} (flickr8k-dev/images, coco-mini/*2017)")
    dest.mkdir(parents=True, exist_ok=True)
    for p in picked:
        (dest / f"{p.parent.parent.name}_{p.name}").symlink_to(p)
    return picked


def command(run: str, photos: Path, work: Path, model: str, shard_size: int) -> list[str]:
    xmr = [sys.executable, "-c", "import sys; from xmr.cli import main; sys.exit(main())", "-q"]
    if run.startswith("index"):
        cmd = xmr + ["index", str(photos), "--index", str(work / run), "--model", model, "--json"]
    else:
        cmd = xmr + ["embed", str(photos), "--out", str(work / run), "--model", model, "--dtype", "float32",
                     "--shard-size", str(shard_size), "--json"]
    if run.endswith("ray1"):
        cmd += ["--ray", "--workers", "1"]
    elif run.endswith("ray2"):
        cmd += ["--ray", "--workers", "2"]
    return cmd


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak tree RSS in GiB, stdout) of ``cmd``."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample():
        p = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                procs = [p] + p.children(recursive=True)
                rss = 0
                for q in procs:
                    try:
                        rss += q.memory_info().rss
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], rss)
            except psutil.Error:
                pass
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, peak[0] / 2**30, out


def vectors(run: str, work: Path) -> dict[str, np.ndarray]:
    """image path -> vector of one run."""
    if run.startswith("index"):
        from xmr.index import IndexStore

        with IndexStore(work / run, readonly=True) as st:
            out = {}
            for ids, vecs in st.iter_vectors():
                recs = st.get_items([int(i) for i in ids])
                out.update({recs[int(i)].path: v for i, v in zip(ids, vecs)})
            return out
    from xmr.embed import iter_shards

    return {m["image_path"]: v for _, vecs, meta in iter_shards(work / run) for v, m in zip(vecs, meta)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder (flickr8k-dev/, coco-mini/)")
    ap.add_argument("--n", type=int, default=300, help="photos (default 300: 200 Flickr8k + 100 COCO)")
    ap.add_argument("--model", default="concept", help="encoder spec (default concept, the default model)")
    ap.add_argument("--shard-size", type=int, default=50, help="images per embed shard (default 50)")
    ap.add_argument("--runs", nargs="*", default=list(RUNS), choices=RUNS)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="xmr-ray-bench-") as tmp:
        work = Path(tmp)
        gather_photos(Path(args.data), args.n, work / "photos")
        env_note = f"{os.cpu_count()} CPUs visible, load average before {os.getloadavg()[0]:.1f}"
        # derived data the model caches on first use (concept's class-text embeddings) is made before timing
        subprocess.run([sys.executable, "-c", f"import xmr; xmr.create_encoder({args.model!r})"], check=True,
                       capture_output=True)
        rows = []
        for run in args.runs:
            wall, peak, _ = timed(command(run, work / "photos", work, args.model, args.shard_size))
            rows.append({"run": run, "seconds": wall, "images_per_s": args.n / wall, "peak_gib": peak})
            print(f"{run}: {wall:.1f} s, {args.n / wall:.2f} images/s, peak {peak:.2f} GiB", file=sys.stderr)
        load_after = os.getloadavg()[0]
        ref = vectors("index", work) if "index" in args.runs else None
        base = next((r["seconds"] for r in rows if r["run"] == "index"), None)
        for r in rows:
            v = vectors(r["run"], work)
            r["vectors"] = len(v)
            if ref is not None:
                same = sorted(v) == sorted(ref)
                r["same_items"] = same
                r["max_abs_diff"] = float(max(np.abs(v[k] - ref[k]).max() for k in ref)) if same else None
            if base:
                r["speed_vs_index"] = base / r["seconds"]

    print(f"{args.n} photos ({args.model}), {env_note}, after {load_after:.1f}\n")
    print("| run | wall s | images/s | vs plain index | peak RSS (tree) GiB | vectors | same items | max abs diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        diff = r.get("max_abs_diff")
        print(f"| {r['run']} | {r['seconds']:.1f} | {r['images_per_s']:.2f} | {r.get('speed_vs_index', float('nan')):.2f}x"
              f" | {r['peak_gib']:.2f} | {r['vectors']} | {r.get('same_items')} | "
              f"{'n/a' if diff is None else f'{diff:.1e}'} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"n": args.n, "model": args.model, "machine": env_note,
                                              "load_after": load_after, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
