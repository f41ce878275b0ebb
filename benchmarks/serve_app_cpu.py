"""CPU per cached text search inside the ``xmr serve`` ASGI app (no HTTP, no client): the server's own
per-request work, measured without the load generator on the same cores.

Indexes the bundled samples with ``--model`` into a temporary folder, builds the app with ``create_app``, warms the
query cache with 4 texts, then sends ``--n`` ``GET /api/search?q=...&k=10`` requests straight into the ASGI app,
one at a time and 16 at once, ``--reps`` times, and prints the process CPU milliseconds per request (min and median
over the repetitions; the minimum is the least disturbed by other jobs on a shared machine).

    python benchmarks/serve_app_cpu.py                               # this checkout
    PYTHONPATH=/tmp/base/src python benchmarks/serve_app_cpu.py      # another checkout's src/ (before / after)
    python benchmarks/serve_app_cpu.py --no-fast-search              # without the fast path (ServeSettings)
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "xmr" / "assets" / "samples"
TEXTS = ["a cat", "coffee", "a red car", "a horse"]


async def _request(app, q: str) -> None:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/api/search", "raw_path": b"/api/search", "query_string": urlencode({"q": q, "k": 10}).encode(),
             "headers": [(b"host", b"127.0.0.1:8000")], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000), "root_path": "", "state": {}}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    if sent[0]["status"] != 200:
        raise SystemExit(f"search answered {sent[0]['status']}: {sent[1].get('body')!r}")


async def measure(app, n: int, reps: int) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {1: [], 16: []}
    async with app.router.lifespan_context(app):
        for t in TEXTS:  # the query cache holds them from now on
            await _request(app, t)
        for _ in range(reps):
            for conc in out:
                c0 = time.process_time()

                async def client(j: int) -> None:
                    for i in range(n // conc):
                        await _request(app, TEXTS[(i + j) % len(TEXTS)])

                await asyncio.gather(*(client(j) for j in range(conc)))
                out[conc].append(1000 * (time.process_time() - c0) / (n // conc * conc))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="concept")
    ap.add_argument("--n", type=int, default=320, help="requests per measurement")
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--no-fast-search", action="store_true", help="ServeSettings(fast_search=False)")
    args = ap.parse_args()

    from xmr import create_encoder
    from xmr.index import index_folder
    from xmr.serve import ServeSettings, create_app

    tmp = Path(tempfile.mkdtemp(prefix="xmr-app-cpu-"))
    try:
        photos = tmp / "photos"
        shutil.copytree(SAMPLES, photos, ignore=shutil.ignore_patterns("*.json", "*.md"))
        encoder = create_encoder(args.model)
        index_folder(photos, tmp / "index", encoder, show_progress=False)
        settings = ServeSettings()
        if args.no_fast_search:
            if "fast_search" not in {f.name for f in dataclasses.fields(ServeSettings)}:
                raise SystemExit("--no-fast-search: this checkout's ServeSettings has no fast_search")
            settings = ServeSettings(fast_search=False)
        app = create_app(tmp / "index", encoder=encoder, settings=settings)
        res = asyncio.run(measure(app, args.n, args.reps))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for conc, v in res.items():
        print(f"{conc:2d} at once: CPU ms per cached search: min {min(v):.3f}  median {statistics.median(v):.3f}  "
              f"({args.reps} x {args.n} requests)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
