"""`xmr serve` per-request work (issue 16): what a repeated query no longer recomputes, and that the answers stay
the same. The latency numbers themselves come from benchmarks/serve_load.py (docs/benchmarks.md)."""
from __future__ import annotations

from urllib.parse import urlencode

import numpy as np
import pytest

from xmr.serve.batcher import QueryEncoder


class _Multilingual:
    """An encoder whose language routing counts its calls (the server's QueryEncoder only needs these members)."""
    spec = "fake-ml"
    dim = 2

    def __init__(self):
        self.calls: list[list[str]] = []

    def text_languages(self, texts, lang=None):
        self.calls.append(list(texts))
        return [{"lang": "de" if t.startswith("ein") else "en", "how": "detected", "detected": None,
                 "confidence": 0.5} for t in texts]

    def encode_text(self, texts, batch_size=32, show_progress=False):
        return np.ones((len(texts), 2), np.float32)


def test_language_routing_of_a_text_is_detected_once():
    enc = _Multilingual()
    q = QueryEncoder(enc, cache_size=2)
    first = q.text_languages(["ein Hund", "a dog", "ein Hund"])
    assert [d["lang"] for d in first] == ["de", "en", "de"]
    assert enc.calls == [["ein Hund", "a dog"]]  # each distinct text once
    first[0]["lang"] = "xx"  # the caller's copy: the remembered answer is not changed
    assert q.text_languages(["a dog", "ein Hund"]) == [first[1], {**first[2], "lang": "de"}]
    assert enc.calls == [["ein Hund", "a dog"]]  # both remembered: no detection
    q.text_languages(["a cat"])  # a third text: LRU of 2 drops the least recent ("a dog")
    q.text_languages(["a dog"])
    assert enc.calls[-2:] == [["a cat"], ["a dog"]]
    off = QueryEncoder(enc, cache_size=0)  # --query-cache 0: nothing remembered
    off.text_languages(["a dog"])
    off.text_languages(["a dog"])
    assert enc.calls[-2:] == [["a dog"], ["a dog"]]


@pytest.fixture(scope="module")
def concept_client(tmp_path_factory, concept_encoder):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from conftest import SAMPLES
    from xmr.index import index_folder
    from xmr.serve import ServeSettings, create_app

    idx = tmp_path_factory.mktemp("serve_speed_idx")
    index_folder(SAMPLES, idx, concept_encoder, show_progress=False)
    app = create_app(idx, encoder=concept_encoder, settings=ServeSettings())
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        yield c


def test_repeated_search_answers_the_same(concept_client):
    """A repeated query (embedding and language routing remembered) gets byte-for-byte the first answer."""
    for params in ({"q": "ein Pferd auf einer Wiese", "k": 3}, {"q": "a cup of coffee", "k": 2},
                   {"q": ["a cat", "eine Katze"], "k": 4, "type": "image"}):
        a = concept_client.get("/api/search", params=params)
        b = concept_client.get("/api/search", params=params)
        assert a.status_code == 200 and a.content == b.content
    body = a.json()
    assert [d["lang"] for d in body["languages"]] == ["en", "de"] and body["type"] == "image"
    assert concept_client.get("/api/search", params={"q": "ein Pferd auf einer Wiese"}).json()["languages"][0][
        "how"] == "detected"


# ---- the fast path of GET /api/search answers as the FastAPI route does ------------------------------------------
def test_parse_plain_search():
    from xmr.serve.fast_search import parse_plain_search

    assert parse_plain_search(b"q=a+cat", 100, 20) == (["a cat"], 20, "all")
    assert parse_plain_search(b"q=a%20cat&q=%C3%A9t%C3%A9&k=5&type=image", 100, 20) == (["a cat", "été"], 5, "image")
    assert parse_plain_search(b"q=&k=100", 100, 20) == ([""], 100, "all")  # blank: the route's own 422 follows
    for qs in (b"", b"k=3", b"q=a&k=0", b"q=a&k=101", b"q=a&k=010", b"q=a&k=1.0", b"q=a&k=", b"q=a&k=1&k=2",
               b"q=a&type=photo", b"q=a&type=all&type=image", b"q=a&fuse=max", b"q=a&not=b", b"q=a&lang=de",
               b"q=a&phrase=x", b"q=a&x=1", b"&".join([b"q=a"] * 9)):
        assert parse_plain_search(qs, 100, 20) is None, qs  # the FastAPI route decides


_REQUESTS = [
    {"q": "a random picture"}, {"q": "a random picture", "k": 3}, {"q": ["a cat", "a dog"], "k": 2, "type": "image"},
    {"q": "ünïcödé ✓ text", "k": 100}, {"q": "x", "type": "video"}, {"q": "x", "type": "moment"},
    {"q": "   "}, {"q": ""}, {"q": "y" * 1001}, {"q": "a", "k": 101}, {"q": "a", "k": 0}, {"q": "a", "k": "010"},
    {"q": "a", "k": "1.0"}, {"q": "a", "k": ""}, {"q": "a", "k": ["1", "2"]}, {"q": "a", "type": "photo"},
    {"q": ["a"] * 9}, {"q": "a", "not": "b"}, {"q": "a", "fuse": "max"}, {}, {"k": 3}, {"q": "a", "lang": "en"},
]


@pytest.mark.parametrize("params", _REQUESTS, ids=range(len(_REQUESTS)))
def test_fast_path_answers_byte_for_byte_as_the_route(index, tiny_encoder, params, monkeypatch):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from xmr.serve import ServeSettings, create_app, fast_search

    taken = []
    real = fast_search.parse_plain_search
    monkeypatch.setattr(fast_search, "parse_plain_search", lambda *a: taken.append(real(*a)) or taken[-1])
    answers = {}
    for fast in (True, False):
        app = create_app(index, encoder=tiny_encoder, settings=ServeSettings(fast_search=fast))
        with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
            r = c.get("/api/search", params=params)
            metrics = [ln for ln in c.get("/metrics").text.splitlines() if ln.startswith("xmr_http_requests_total")]
        answers[fast] = (r.status_code, r.content, sorted(r.headers.items()), metrics)
    assert answers[True] == answers[False]
    assert len(taken) == 1  # asked once (fast_search=False never asks)
    assert (taken[0] is not None) == (real(urlencode(params, doseq=True).encode(), 100, 20) is not None)


@pytest.fixture
def index(tmp_path, tiny_encoder):
    import shutil

    from conftest import SAMPLES
    from xmr.index import index_folder

    d = tmp_path / "photos"
    d.mkdir()
    for name in ("chelsea.png", "coffee.png", "horse.png"):
        shutil.copy(SAMPLES / name, d / name)
    index_folder(d, tmp_path / "idx", tiny_encoder, show_progress=False)
    return tmp_path / "idx"


def test_fast_path_keeps_the_host_check_security_headers_and_metrics(index, tiny_encoder):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from xmr.serve import create_app

    with TestClient(create_app(index, encoder=tiny_encoder), base_url="http://127.0.0.1") as c:
        r = c.get("/api/search", params={"q": "a cat", "k": 2})
        assert r.status_code == 200 and r.headers["x-frame-options"] == "DENY" and len(r.json()["results"]) == 2
        bad = c.get("/api/search", params={"q": "a cat"}, headers={"Host": "evil.example"})
        assert bad.status_code == 400 and "invalid host header" in bad.json()["error"]
        assert bad.headers["x-content-type-options"] == "nosniff"
        m = c.get("/metrics").text
    assert 'xmr_http_requests_total{method="GET",route="/api/search",status="200"} 1' in m
    assert 'xmr_stage_duration_seconds_count{stage="encode_query"} 1' in m


def test_load_benchmark_reads_the_server_histogram():
    """benchmarks/serve_load.py's server-side percentiles: Prometheus-style interpolation inside the bucket, over
    the requests between two scrapes."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"
    spec = importlib.util.spec_from_file_location("serve_load", path)
    sl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sl)
    text = "\n".join(f'xmr_http_request_duration_seconds_bucket{{route="/api/search",le="{le}"}} {n}'
                     for le, n in (("0.01", 10), ("0.1", 60), ("0.25", 109), ("+Inf", 110)))
    text += '\nxmr_http_request_duration_seconds_bucket{route="/other",le="0.01"} 999'
    after = sl.search_histogram(text)
    before = {0.01: 10, 0.1: 10, 0.25: 10, float("inf"): 10}  # 10 earlier requests, all under 10 ms
    assert after == {0.01: 10, 0.1: 60, 0.25: 109, float("inf"): 110}
    assert sl.histogram_quantile(before, after, 0.5) == pytest.approx(0.1)  # rank 50 of 100: top of (0.01, 0.1]
    assert sl.histogram_quantile(before, after, 0.99) == pytest.approx(0.25)  # rank 99: top of (0.1, 0.25]
    assert sl.histogram_quantile(before, after, 0.745) == pytest.approx(0.175)  # rank 74.5: half of 49 in (0.1, 0.25]
    assert sl.histogram_quantile(before, after, 0.999) == 0.25  # in +Inf: the largest finite bound
    assert sl.histogram_quantile(after, after, 0.5) is None
