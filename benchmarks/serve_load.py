"""Bounded load test of ``xmr serve`` on loopback: latency percentiles, throughput and errors of text searches.

Builds an index of the bundled sample images (or uses ``--index``), starts ``xmr serve`` in a subprocess on a free
127.0.0.1 port, sends ``--requests`` text searches from ``--concurrency`` concurrent httpx clients (queries cycle
through a fixed list), then reads the server's own per-stage timings from ``/metrics`` and stops the server.
Bounded: at most ``--requests`` requests and ``--max-seconds`` of load; nothing leaves 127.0.0.1.

    python benchmarks/serve_load.py                                  # 2,000 searches, 16 clients, model concept
    python benchmarks/serve_load.py --requests 200 --concurrency 4   # a quick look
    python benchmarks/serve_load.py --json out.json                  # also write the numbers as JSON
    python benchmarks/serve_load.py --unique                         # every query text new: encoding, not cache
    python benchmarks/serve_load.py --src /tmp/old/src               # another checkout's code (before / after)
    python benchmarks/serve_load.py --client raw                     # a load generator that needs ~10x less CPU

Besides the client-side percentiles it prints the CPU seconds the client and the server spent during the load (they
share the machine: httpx needs about as much CPU per request as the server) and the server's own p50 / p99 of
/api/search from its /metrics histogram.

Queries cycle through a fixed list of 24 texts (warmed up first), so with the server's query cache (on by default)
the steady state measures cached queries; ``--unique`` appends the request number to every text so each one is
encoded, ``--query-cache 0`` turns the server's cache off.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "xmr" / "assets" / "samples"
XMR = [sys.executable, "-c", "import sys; from xmr.cli import main; sys.exit(main(sys.argv[1:]))"]

QUERIES = [
    "a facial photo of a tabby cat", "a cup of coffee on a saucer", "a red motorcycle standing in a garage",
    "a rocket standing on a launchpad", "a portrait of an astronaut with the American flag",
    "a person looking at a camera on a tripod", "a black-and-white silhouette of a horse",
    "a page of text about segmentation", "a cat", "coffee", "a motorbike", "space", "a horse", "a photographer",
    "a dog running on the beach", "a red car", "a bowl of soup", "a cat sleeping on a sofa", "an espresso",
    "a launch at night", "text on paper", "a man with a camera", "an animal", "a vehicle",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_load(base: str, n: int, concurrency: int, max_seconds: float, k: int, unique: bool = False,
                   client_kind: str = "httpx") -> dict:
    import httpx

    lat: list[float] = []
    statuses: dict[str, int] = {}
    next_i = 0
    t_start = time.perf_counter()

    async def worker(client):
        nonlocal next_i
        while next_i < n and time.perf_counter() - t_start < max_seconds:
            i, next_i = next_i, next_i + 1
            t0 = time.perf_counter()
            try:
                q = QUERIES[i % len(QUERIES)] + (f" {i}" if unique else "")
                r = await client.get("/api/search", params={"q": q, "k": k})
                ok = r.status_code == 200 and len(r.json()["results"]) > 0
                key = str(r.status_code) if ok or r.status_code != 200 else "200-empty"
            except Exception as e:  # noqa: BLE001 - every failure is counted, by kind
                key = type(e).__name__
            lat.append(time.perf_counter() - t0)
            statuses[key] = statuses.get(key, 0) + 1

    cpu0 = time.process_time()
    if client_kind == "raw":
        host, port = base.rsplit("//", 1)[1].split(":")
        clients = [await _RawClient.connect(host, int(port)) for _ in range(concurrency)]
        t_start = time.perf_counter()
        try:
            await asyncio.gather(*(worker(c) for c in clients))
        finally:
            for c in clients:
                c.close()
    else:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60.0) as client:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - t_start
    client_cpu = time.process_time() - cpu0
    a = np.array(lat) * 1000
    return {
        "requests": len(lat), "concurrency": concurrency, "wall_s": round(wall, 2),
        "throughput_rps": round(len(lat) / wall, 1),
        "latency_ms": {p: round(float(np.percentile(a, q)), 1) for p, q in
                       (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
        "errors": sum(v for s, v in statuses.items() if s != "200"), "statuses": statuses,
        "client": client_kind, "client_cpu_s": round(client_cpu, 2),
    }


class _RawClient:
    """A minimal HTTP/1.1 keep-alive client (one connection, one request at a time) on asyncio streams: a few
    microseconds of client CPU per request where httpx spends about a millisecond, so on a small machine the load
    generator takes less CPU away from the server it measures (``--client raw``)."""

    def __init__(self, reader, writer, host: str, port: int):
        self.r, self.w, self.host = reader, writer, f"{host}:{port}"

    @classmethod
    async def connect(cls, host: str, port: int):
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, host, port)

    async def get(self, path: str, params: dict):
        from urllib.parse import urlencode

        self.w.write(f"GET {path}?{urlencode(params)} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await asyncio.wait_for(self.r.readuntil(b"\r\n\r\n"), 60)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length")
        return _RawResponse(status, await asyncio.wait_for(self.r.readexactly(length), 60))

    def close(self) -> None:
        self.w.close()


class _RawResponse:
    def __init__(self, status_code: int, body: bytes):
        self.status_code, self.body = status_code, body

    def json(self):
        return json.loads(self.body)


def server_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def search_histogram(metrics_text: str) -> dict[float, int]:
    """Cumulative counts of the server's whole-request latency histogram of ``/api/search`` (upper bound ->
    requests at most that long; ``inf`` for all)."""
    out = {}
    for le, n in re.findall(r'xmr_http_request_duration_seconds_bucket{route="/api/search",le="([^"]+)"} (\S+)',
                            metrics_text):
        out[float(le)] = int(float(n))
    return out


def histogram_quantile(before: dict[float, int], after: dict[float, int], q: float) -> float | None:
    """The q-quantile (seconds) of the requests counted between two scrapes, interpolated linearly inside its
    bucket as Prometheus' histogram_quantile does; None without requests."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0) for b in bounds]
    total = counts[-1] if counts else 0
    if total == 0:
        return None
    rank, lo, prev = q * total, 0.0, 0
    for b, c in zip(bounds, counts):
        if c >= rank:
            if b == float("inf"):
                return lo
            return lo + (b - lo) * (rank - prev) / max(1, c - prev)
        lo, prev = b, c
    return lo


def stage_totals(metrics_text: str) -> dict:
    """Per stage (sum of seconds, count) of the server's stage histograms, and its encoder's forward passes."""
    out = {}
    for stage in ("encode_query", "search", "rescore"):
        s = re.search(rf'xmr_stage_duration_seconds_sum{{stage="{stage}"}} (\S+)', metrics_text)
        c = re.search(rf'xmr_stage_duration_seconds_count{{stage="{stage}"}} (\S+)', metrics_text)
        if s and c:
            out[stage] = (float(s.group(1)), float(c.group(1)))
    b = re.search(r"^xmr_query_encoder_batches_total (\S+)", metrics_text, re.M)
    out["encoder_batches"] = int(float(b.group(1))) if b else None
    return out


def stage_means(before: dict, after: dict) -> dict:
    """Mean ms per stage over the requests between two scrapes (the warm-up's encodings left out)."""
    out = {}
    for stage in ("encode_query", "search", "rescore"):
        if stage in after:
            s0, c0 = before.get(stage, (0.0, 0.0))
            s1, c1 = after[stage]
            if c1 > c0:
                out[stage] = round(1000 * (s1 - s0) / (c1 - c0), 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--model", default="concept")
    ap.add_argument("--index", help="an existing index (default: a temporary index of the bundled samples)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--max-seconds", type=float, default=600, help="stop sending after this long")
    ap.add_argument("--startup-timeout", type=float, default=300)
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--unique", action="store_true", help="a new text for every request (no query-cache hits)")
    ap.add_argument("--query-cache", type=int, default=None, help="pass --query-cache N to xmr serve")
    ap.add_argument("--client", choices=("httpx", "raw"), default="httpx",
                    help="load generator: httpx.AsyncClient (default) or a minimal asyncio HTTP/1.1 client that "
                         "uses less CPU (the client shares the machine with the server)")
    ap.add_argument("--src", help="run the server (and the index build) from this src/ folder (PYTHONPATH)")
    args = ap.parse_args()
    if not (1 <= args.requests <= 100_000 and 1 <= args.concurrency <= 256):
        ap.error("--requests must be 1..100000 and --concurrency 1..256")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    tmp = Path(tempfile.mkdtemp(prefix="xmr-serve-load-"))
    server = None
    try:
        index = args.index
        if index is None:
            photos, index = tmp / "photos", str(tmp / "index")
            shutil.copytree(SAMPLES, photos, ignore=shutil.ignore_patterns("*.json", "*.md"))
            subprocess.run(XMR + ["-q", "index", str(photos), "--index", index, "--model", args.model], check=True,
                           env=env)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(tmp / "server.log", "w")
        cache = [] if args.query_cache is None else ["--query-cache", str(args.query_cache)]
        server = subprocess.Popen(XMR + ["-q", "serve", "--index", index, "--host", "127.0.0.1", "--port", str(port),
                                         *cache], env=env, stdout=log, stderr=subprocess.STDOUT)
        import httpx

        deadline = time.monotonic() + args.startup_timeout
        while True:
            if server.poll() is not None:
                raise SystemExit(f"server exited with {server.returncode}:\n{(tmp / 'server.log').read_text()}")
            try:
                health = httpx.get(base + "/health", timeout=2).json()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("server did not come up in time")
                time.sleep(0.5)
        for q in QUERIES:  # warm-up, not measured
            httpx.get(base + "/api/search", params={"q": q}, timeout=60)
        text0 = httpx.get(base + "/metrics").text
        before, hist0 = stage_totals(text0), search_histogram(text0)
        cpu0 = server_cpu_seconds(server.pid)
        res = asyncio.run(run_load(base, args.requests, args.concurrency, args.max_seconds, args.k, args.unique,
                                   args.client))
        cpu1 = server_cpu_seconds(server.pid)
        res["server_cpu_s"] = None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 2)
        text1 = httpx.get(base + "/metrics").text
        stages, hist1 = stage_totals(text1), search_histogram(text1)
        res["server_latency_ms"] = {p: None if v is None else round(1000 * v, 1) for p, v in
                                    (("p50", histogram_quantile(hist0, hist1, 0.5)),
                                     ("p99", histogram_quantile(hist0, hist1, 0.99)))}
        res["server_mean_ms"] = stage_means(before, stages)  # over the measured requests only
        if stages.get("encoder_batches") is not None and before.get("encoder_batches") is not None:
            passes = stages["encoder_batches"] - before["encoder_batches"]  # none when every query was cached
            res["mean_text_batch"] = round(res["requests"] / passes, 1) if passes else None
        res.update(model=health["model"], items=health["items"], k=args.k, cpus=os.cpu_count(),
                   load_avg=os.getloadavg(), unique=args.unique, src=args.src,
                   python=platform.python_version(),
                   command="python benchmarks/serve_load.py " + " ".join(sys.argv[1:]))
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    lm = res["latency_ms"]
    print(f"{res['requests']} searches, {res['concurrency']} concurrent clients, model {res['model']}, "
          f"{res['items']} items, k={res['k']}")
    print(f"latency ms: p50 {lm['p50']}  p90 {lm['p90']}  p99 {lm['p99']}  max {lm['max']}")
    print(f"throughput: {res['throughput_rps']} req/s over {res['wall_s']} s;  errors: {res['errors']} "
          f"{res['statuses']}")
    print(f"server-side latency of /api/search (from its histogram, interpolated in buckets): "
          f"p50 {res['server_latency_ms']['p50']}  p99 {res['server_latency_ms']['p99']} ms")
    print(f"CPU seconds during the load: client ({res['client']}) {res['client_cpu_s']}, server "
          f"{res['server_cpu_s']} (wall {res['wall_s']} s)")
    print(f"server stage means (ms): {res['server_mean_ms']};  mean text batch: {res.get('mean_text_batch')};  "
          f"load average at the end: {', '.join(f'{x:.1f}' for x in res['load_avg'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if res["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
