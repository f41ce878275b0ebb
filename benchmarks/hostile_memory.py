"""Peak memory under hostile load, with and without the budgets of issue 19, each case in a fresh process.

    python benchmarks/hostile_memory.py                       # both experiments, default sizes
    python benchmarks/hostile_memory.py --uploads 16 --upload-mp 39 --images 4 --image-side 6000

* uploads: N clients at once post a small PNG (1-bit, a few KB) that declares ``--upload-mp`` megapixels to
  ``/api/search/image`` (TestClient, one thread per client) of an index of 3 tiny images. Baseline: no shared
  budget and glibc's default malloc arenas (what the server did before); ours: the default budget (80 MP) and 2
  malloc arenas, as ``xmr serve`` sets them.
* index: ``--images`` JPEGs of ``--image-side``² pixels indexed with ``tiny`` in one batch of 8. Baseline: no pixel
  budget per batch (what the indexer did before); ours: the default ``MAX_BATCH_PIXELS`` (64 MP).

Reports peak RSS (``ru_maxrss`` of the child process) and wall time, and the ratio ours / baseline.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent("""
    import io, json, os, resource, sys, time
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    import numpy as np
    from PIL import Image
    kind, work, budget, n, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    from xmr import create_encoder
    from xmr.index import index_folder
    enc = create_encoder("tiny")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if kind == "uploads":
        from fastapi.testclient import TestClient
        from xmr.serve import ServeSettings, create_app
        from xmr.serve.uploads import limit_malloc_arenas
        if budget < 10**12:  # "ours": as `xmr serve` runs (pixel budget + 2 malloc arenas)
            limit_malloc_arenas(2)
        c = TestClient(create_app(work / "idx", encoder=enc, settings=ServeSettings(upload_pixel_budget=budget,
                                                                                    upload_wait_s=600)),
                       base_url="http://127.0.0.1")
        buf = io.BytesIO()
        Image.new("1", (size, size)).save(buf, "PNG")
        data = buf.getvalue()
        with ThreadPoolExecutor(n) as ex:
            codes = list(ex.map(lambda i: c.post("/api/search/image",
                                                 files={"file": ("q.png", data, "image/png")}).status_code, range(n)))
        ok = codes.count(200)
    else:
        rep = index_folder(work / "photos", work / f"idx-{budget}", enc, show_progress=False, batch_size=8,
                           max_batch_pixels=budget)
        ok = rep.added
    print(json.dumps({"ok": ok, "seconds": time.perf_counter() - t0,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "base_mb": base / 1024}))
""")


def run(kind: str, work: Path, budget: int, n: int, size: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(work), str(budget), str(n), str(size)],
                         capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uploads", type=int, default=16, help="concurrent upload clients (default 16)")
    ap.add_argument("--upload-mp", type=float, default=39.0, help="megapixels each upload declares (default 39)")
    ap.add_argument("--images", type=int, default=4, help="large JPEGs in one index batch (default 4)")
    ap.add_argument("--image-side", type=int, default=6000, help="side of each JPEG in pixels (default 6000)")
    args = ap.parse_args()

    import numpy as np
    from PIL import Image

    from xmr import create_encoder
    from xmr.index import index_folder
    from xmr.index.indexer import MAX_BATCH_PIXELS
    from xmr.serve.settings import ServeSettings

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        small = work / "small"
        small.mkdir()
        for i in range(3):
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(small / f"{i}.png")
        index_folder(small, work / "idx", create_encoder("tiny"), show_progress=False)
        side = int((args.upload_mp * 1e6) ** 0.5)
        n = args.uploads
        rows = [("uploads", f"{n} clients x {side}x{side} PNG", "no shared budget (before)", 10**12,
                 "80 MP budget + 2 arenas (xmr serve)", ServeSettings().upload_pixel_budget, n, side)]
        photos = work / "photos"
        photos.mkdir()
        rng = np.random.default_rng(0)
        tile = rng.integers(0, 255, (args.image_side // 8, args.image_side // 8, 3), dtype=np.uint8)
        for i in range(args.images):
            Image.fromarray(np.tile(tile, (8, 8, 1))).save(photos / f"big{i}.jpg", quality=85)
        rows.append(("index", f"{args.images} JPEGs {args.image_side}x{args.image_side}, batch 8",
                     "no pixel budget (before)", 10**15, "64 MP per batch (default)", MAX_BATCH_PIXELS,
                     args.images, args.image_side))
        print("| experiment | setting | ok | peak RSS MB | wall s | ours / baseline (RSS) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for kind, what, bname, bbudget, oname, obudget, count, sz in rows:
            b = run(kind, work, bbudget, count, sz)
            o = run(kind, work, obudget, count, sz)
            print(f"| {kind}: {what} | {bname} | {b['ok']}/{count} | {b['peak_mb']:.0f} | {b['seconds']:.1f} | |")
            print(f"| {kind}: {what} | {oname} | {o['ok']}/{count} | {o['peak_mb']:.0f} | {o['seconds']:.1f} | "
                  f"{o['peak_mb'] / b['peak_mb']:.2f} |")


if __name__ == "__main__":
    main()
