"""Prometheus text exposition (format 0.0.4), written by hand: no dependency, a handful of series.

Series:
    xmr_http_requests_total{method, route, status}       counter; ``route`` is the route template
                                                         (``/api/items/{item_id}``), ``unmatched`` for 404s
    xmr_http_request_duration_seconds{route}             histogram of whole-request latency
    xmr_stage_duration_seconds{stage}                    histogram per search stage: ``encode_query``,
                                                         ``search``, ``rescore`` (X-Pool / prototype indexes; ~0 otherwise)
    xmr_index_items, xmr_index_generation                gauges of the snapshot being served
    xmr_index_reloads_total                              counter of snapshot rebuilds after index updates
    xmr_thumbnail_cache_bytes                            gauge
"""
from __future__ import annotations

import bisect
import contextlib
import threading
import time
from typing import Callable, Iterator

#: latency buckets in seconds (upper bounds; +Inf is implicit)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGES = ("encode_query", "search", "rescore")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _esc(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: tuple) -> str:
    return ",".join(f'{n}="{_esc(v)}"' for n, v in zip(names, values))


def _num(x: float) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # last slot: above the largest bucket
        self.sum = 0.0
        self.n = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, v)] += 1
        self.sum += v
        self.n += 1


class Metrics:
    """Thread-safe counters and histograms, rendered by :meth:`render`."""

    def __init__(self, gauges: Callable[[], dict[str, float]] | None = None) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._req_latency: dict[str, _Histogram] = {}
        self._stages: dict[str, _Histogram] = {s: _Histogram() for s in STAGES}
        self._gauges = gauges

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            self._req_latency.setdefault(route, _Histogram()).observe(seconds)

    def observe_stage(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._stages.setdefault(stage, _Histogram()).observe(seconds)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.observe_stage(name, time.perf_counter() - t0)

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            out += ["# HELP xmr_http_requests_total HTTP requests by method, route template and status code.",
                    "# TYPE xmr_http_requests_total counter"]
            for (m, r, s), n in sorted(self._requests.items()):
                out.append(f"xmr_http_requests_total{{{_labels(('method', 'route', 'status'), (m, r, s))}}} {n}")
            out += ["# HELP xmr_http_request_duration_seconds Whole-request latency by route template.",
                    "# TYPE xmr_http_request_duration_seconds histogram"]
            for r, h in sorted(self._req_latency.items()):
                out += _render_hist("xmr_http_request_duration_seconds", ("route",), (r,), h)
            out += ["# HELP xmr_stage_duration_seconds Latency of one search stage (encode_query, search, rescore).",
                    "# TYPE xmr_stage_duration_seconds histogram"]
            for s, h in sorted(self._stages.items()):
                out += _render_hist("xmr_stage_duration_seconds", ("stage",), (s,), h)
        for name, (kind, help_, value) in (self._gauges() if self._gauges else {}).items():
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {_num(value)}"]
        return "\n".join(out) + "\n"


def _render_hist(name: str, lnames: tuple[str, ...], lvalues: tuple, h: _Histogram) -> list[str]:
    base = _labels(lnames, lvalues)
    lines, cum = [], 0
    for ub, c in zip(BUCKETS, h.counts):
        cum += c
        lines.append(f'{name}_bucket{{{base},le="{ub}"}} {cum}')
    lines.append(f'{name}_bucket{{{base},le="+Inf"}} {h.n}')
    lines.append(f"{name}_sum{{{base}}} {h.sum!r}")
    lines.append(f"{name}_count{{{base}}} {h.n}")
    return lines


class MetricsMiddleware:
    """Pure ASGI middleware: counts every HTTP request by route template and status, and times it."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def _send(msg):
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(scope.get("method", "?"), label, status[0], time.perf_counter() - t0)
