"""`xmr serve` API: search, items, ranges, metrics, live index updates, and the safety rules (bounded input, JSON
errors, no path from a request reaches the filesystem, no stack trace reaches a client). Uses FastAPI's TestClient
on small indexes made with the fast `tiny` encoder, plus one quality check with `concept` on the bundled samples."""
from __future__ import annotations

import io
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx: pip install -e '.[serve,browser]'")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import SAMPLES  # noqa: E402
from xmr.index import index_folder  # noqa: E402
from xmr.serve import ServeSettings, create_app  # noqa: E402
from xmr.serve.live import parse_item_id  # noqa: E402

LOCAL = "http://127.0.0.1"


def _make_images(folder: Path, n: int, seed: int = 0, start: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        p = folder / f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(p)
        out.append(p)
    return out


def _client(index, encoder, **settings) -> TestClient:
    app = create_app(index, encoder=encoder, settings=ServeSettings(**settings))
    return TestClient(app, base_url=LOCAL, raise_server_exceptions=False)


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    _make_images(d, 4)
    shutil.copy(SAMPLES / "chelsea.png", d / "chelsea.png")
    return d


@pytest.fixture
def index(tmp_path, photos, tiny_encoder) -> Path:
    idx = tmp_path / "idx"
    index_folder(photos, idx, tiny_encoder, show_progress=False)
    return idx


@pytest.fixture
def client(index, tiny_encoder) -> TestClient:
    return _client(index, tiny_encoder)


def _id_of(client: TestClient, name: str) -> int:
    res = client.get("/api/search", params={"q": "anything", "k": 100}).json()["results"]
    return next(r["id"] for r in res if r["path"] == name)


# ---- search ----------------------------------------------------------------------------------------------------
def test_text_search_results(client, tmp_path):
    r = client.get("/api/search", params={"q": "a random picture", "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert (body["model"], body["k"], body["type"], len(body["results"])) == ("tiny", 3, "all", 3)
    assert [x["rank"] for x in body["results"]] == [1, 2, 3]
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)
    first = body["results"][0]
    assert set(first) >= {"id", "path", "score", "media_type", "thumbnail", "media"}
    assert "start" not in first and "end" not in first  # images carry no segment fields
    assert first["media"] == f"/api/items/{first['id']}/media"
    assert str(tmp_path) not in r.text  # paths are relative to the indexed root, never absolute


def test_type_filter(client):
    assert len(client.get("/api/search", params={"q": "x", "type": "image", "k": 100}).json()["results"]) == 5
    video = client.get("/api/search", params={"q": "x", "type": "video"})
    assert video.status_code == 200 and video.json()["results"] == []  # no video indexing yet


_SHARED: dict[str, Path] = {}


def concept_samples_index(tmp_path_factory, encoder) -> Path:
    """The bundled sample images indexed with `concept`, built once per session (the browser tests reuse it: it is
    the slowest step of both). Tests must not modify it."""
    if "concept" not in _SHARED:
        photos = tmp_path_factory.mktemp("concept_photos")
        for p in SAMPLES.iterdir():
            if p.suffix in (".png", ".jpg"):
                shutil.copy(p, photos / p.name)
        idx = tmp_path_factory.mktemp("concept_idx")
        index_folder(photos, idx, encoder, show_progress=False)
        _SHARED["concept"] = idx
    return _SHARED["concept"]


def test_concept_finds_the_cat(tmp_path_factory, concept_encoder):
    c = _client(concept_samples_index(tmp_path_factory, concept_encoder), concept_encoder)
    r = c.get("/api/search", params={"q": "a facial photo of a tabby cat", "k": 3})
    assert r.status_code == 200
    assert r.json()["results"][0]["path"] == "chelsea.png"


def test_image_search_finds_the_same_image(client):
    data = (SAMPLES / "chelsea.png").read_bytes()
    r = client.post("/api/search/image", params={"k": 2}, files={"file": ("q.png", data, "image/png")})
    assert r.status_code == 200, r.text
    top = r.json()["results"][0]
    assert top["path"] == "chelsea.png" and top["score"] == pytest.approx(1.0, abs=1e-4)
    raw = client.post("/api/search/image", content=data, headers={"content-type": "image/png"})  # raw body too
    assert raw.json()["results"][0]["path"] == "chelsea.png"


# ---- bad input -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("params, status", [
    ({}, 422),  # no q
    ({"q": ""}, 422),
    ({"q": "   "}, 422),
    ({"q": "x" * 1001}, 422),
    ({"q": "cat", "k": -1}, 422),
    ({"q": "cat", "k": 0}, 422),
    ({"q": "cat", "k": 101}, 422),
    ({"q": "cat", "k": "abc"}, 422),
    ({"q": "cat", "k": "1e3"}, 422),
    ({"q": "cat", "type": "audio"}, 422),
])
def test_bad_text_queries(client, params, status):
    r = client.get("/api/search", params=params)
    assert r.status_code == status
    assert isinstance(r.json()["error"], str) and r.json()["error"]


def _png(size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("kwargs, status", [
    (dict(files={"file": ("x.png", b"this is not an image", "image/png")}), 400),
    (dict(files={"file": ("x.png", _png()[:60], "image/png")}), 400),  # truncated
    (dict(files={"file": ("x.png", b"", "image/png")}), 400),  # empty
    (dict(files={"other": ("x.png", _png(), "image/png")}), 422),  # no `file` field
    (dict(content=b'{"image": 1}', headers={"content-type": "application/json"}), 415),
    (dict(content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}), 422),
    (dict(content=_png(), headers={"content-type": "multipart/form-data"}), 400),  # no boundary
])
def test_bad_uploads(client, kwargs, status):
    r = client.post("/api/search/image", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]


def test_upload_size_and_pixel_limits(index, tiny_encoder):
    c = _client(index, tiny_encoder, max_upload_bytes=2000, max_upload_pixels=10_000)
    big = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="PNG")  # ~12 kB of noise: over 2000 bytes
    r = c.post("/api/search/image", files={"file": ("big.png", buf.getvalue(), "image/png")})
    assert r.status_code == 413 and "too large" in r.json()["error"]
    r = c.post("/api/search/image", content=b"\0" * 100_000, headers={"content-type": "image/png"})
    assert r.status_code == 413
    r = c.post("/api/search/image", files={"file": ("wide.png", _png((200, 100)), "image/png")})  # small file, 20k px
    assert r.status_code == 413 and "pixel" in r.json()["error"]


# ---- items, traversal, files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, expected", [("1", 1), ("42", 42), ("-1", None), ("0", None), ("01", None),
                                           ("1e9", None), ("abc", None), ("1.0", None), (" 1", None), ("1/..", None),
                                           ("9" * 19, None), ("", None), ("٣", None)])
def test_parse_item_id(raw, expected):
    assert parse_item_id(raw) == expected


TRAVERSALS = [
    "/api/items/../../etc/passwd",
    "/api/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/items/%2e%2e/media",
    "/api/items/..%2F..%2F..%2Fetc%2Fpasswd/media",
    "/api/items/%252e%252e%252fetc%252fpasswd/media",
    "/api/items//etc/passwd",
    "/api/items/%2Fetc%2Fpasswd/media",
    "/api/items/-1",
    "/api/items/-1/media",
    "/api/items/1e9/thumbnail",
    "/api/items/abc/media",
    "/api/items/0/media",
    "/api/items/999999/media",
    "/api/items/1%00/media",
    "/static/..%2fapi.py",
    "/static/%2e%2e/live.py",
    "/static/../../../etc/passwd",
]


@pytest.mark.parametrize("url", TRAVERSALS)
def test_traversal_and_bad_ids_are_404(client, url):
    r = client.get(url)
    assert r.status_code == 404, (url, r.status_code)
    assert r.json()["error"]
    assert "root:" not in r.text


def test_item_metadata_thumbnail_and_media(client, photos):
    i = _id_of(client, "chelsea.png")
    meta = client.get(f"/api/items/{i}").json()
    assert (meta["path"], meta["media_type"], meta["width"], meta["height"]) == ("chelsea.png", "image", 451, 300)
    t = client.get(f"/api/items/{i}/thumbnail")
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
    im = Image.open(io.BytesIO(t.content))
    assert im.format == "JPEG" and max(im.size) == 256
    assert client.get(f"/api/items/{i}/thumbnail").content == t.content  # from the LRU
    m = client.get(f"/api/items/{i}/media")
    assert m.status_code == 200 and m.content == (photos / "chelsea.png").read_bytes()
    assert m.headers["content-type"] == "image/png" and m.headers["accept-ranges"] == "bytes"
    head = client.head(f"/api/items/{i}/media")
    assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) == len(m.content)


def test_thumbnails_of_large_jpeg_and_of_a_file_gone_bad(client, photos):
    big = photos / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)).save(big, quality=90)
    ctx = client.app.state.xmr
    t = ctx.thumbs
    data = t.get(big)  # decoded at reduced scale (JPEG draft), then shrunk
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG" and im.size == (256, 192)
    i = _id_of(client, "img_003.png")
    bad = photos / "img_003.png"
    st = bad.stat()
    with open(bad, "r+b") as f:  # corrupted in place after indexing: same inode, size and (restored) mtime
        f.write(b"\0" * st.st_size)
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = client.get(f"/api/items/{i}/thumbnail")
    assert r.status_code == 404 and "decoded" in r.json()["error"]
    (photos / "img_003.png").write_bytes(_png()[:50])  # truncated: no longer the file that was indexed
    r = client.get(f"/api/items/{i}/thumbnail")
    assert r.status_code == 404 and "changed since it was indexed" in r.json()["error"]


def test_range_requests(client, photos):
    i = _id_of(client, "chelsea.png")
    data = (photos / "chelsea.png").read_bytes()
    r = client.get(f"/api/items/{i}/media", headers={"Range": "bytes=0-99"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 0-99/{len(data)}"
    assert r.content == data[:100]
    r = client.get(f"/api/items/{i}/media", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == data[-10:]
    r = client.get(f"/api/items/{i}/media", headers={"Range": f"bytes={len(data) + 10}-"})
    assert r.status_code == 416


def test_missing_or_escaped_files_are_not_served(client, photos, tmp_path):
    gone, swapped = _id_of(client, "img_000.png"), _id_of(client, "img_001.png")
    (photos / "img_000.png").unlink()
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png())
    (photos / "img_001.png").unlink()
    os.symlink(secret, photos / "img_001.png")  # swapped for a link out of the indexed folder
    for i in (gone, swapped):
        for what in ("media", "thumbnail"):
            r = client.get(f"/api/items/{i}/{what}")
            assert r.status_code == 404 and r.json()["error"], (i, what)
    (photos / "img_002.png").unlink()
    (photos / "img_002.png").mkdir()  # not a regular file any more
    assert client.get(f"/api/items/{_id_of(client, 'img_002.png')}/media").status_code == 404


def test_symlink_inside_root_is_served(tmp_path, tiny_encoder):
    photos = tmp_path / "p"
    _make_images(photos / "real", 1)
    os.symlink(photos / "real" / "img_000.png", photos / "alias.png")
    index_folder(photos, tmp_path / "idx", tiny_encoder, show_progress=False)
    c = _client(tmp_path / "idx", tiny_encoder)
    for name in ("alias.png", "real/img_000.png"):
        assert c.get(f"/api/items/{_id_of(c, name)}/media").status_code == 200


# ---- service ---------------------------------------------------------------------------------------------------
_SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                     r'(-?[0-9.e+-]+|\+Inf|NaN)$')


def test_metrics_exposition(client):
    client.get("/api/search", params={"q": "cat"})
    client.get("/api/search", params={"q": ""})
    client.get("/api/items/abc")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = r.text.strip().splitlines()
    for ln in lines:
        assert ln.startswith("# HELP ") or ln.startswith("# TYPE ") or _SAMPLE.match(ln), ln
    text = r.text
    assert 'xmr_http_requests_total{method="GET",route="/api/search",status="200"} 1' in text
    assert 'xmr_http_requests_total{method="GET",route="/api/search",status="422"} 1' in text
    assert 'xmr_http_requests_total{method="GET",route="/api/items/{item_id}",status="404"} 1' in text
    for stage in ("encode_query", "search", "rescore"):
        buckets = [int(m) for m in re.findall(rf'xmr_stage_duration_seconds_bucket{{stage="{stage}",le="[^"]+"}} (\d+)',
                                              text)]
        assert buckets == sorted(buckets) and buckets[-1] == 1, stage  # cumulative; +Inf = count = 1 search
        assert f'xmr_stage_duration_seconds_count{{stage="{stage}"}} 1' in text
    assert "xmr_index_items 5" in text
    try:  # the official parser, when it is installed
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"xmr_http_requests", "xmr_stage_duration_seconds"} <= names


def test_health_page_and_openapi(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["items"] == 5 and h["generation"] >= 1
    page = client.get("/")
    assert page.status_code == 200 and 'id="q"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").status_code == 200
    assert "http" not in re.sub(r'href="/[^"]*"|src="/[^"]*"', "", page.text.split("<body>")[0])  # no CDN
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/search/image", "/api/items/{item_id}", "/api/items/{item_id}/media",
            "/api/items/{item_id}/thumbnail", "/health", "/metrics"} <= set(paths)


def test_foreign_host_header_refused(client):
    """DNS-rebinding guard: a loopback server answers only to loopback host names."""
    assert client.get("/health", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/health", headers={"host": "localhost:8000"}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[::2]", "bad host"])
def test_foreign_host_answered_with_json_and_security_headers(client, host):
    """A refused Host gets the same kind of answer as every other error: a JSON 400 with the security headers."""
    r = client.get("/api/search", params={"q": "cat"}, headers={"host": host})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/json")
    assert "host" in r.json()["error"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8000", "LOCALHOST", "localhost:1", "[::1]", "[::1]:8000"])
def test_loopback_host_names_accepted(client, host):
    r = client.get("/health", headers={"host": host})
    assert r.status_code == 200 and r.headers["x-frame-options"] == "DENY"


def test_allowed_host_patterns(index, tiny_encoder):
    named = _client(index, tiny_encoder, host="0.0.0.0", allowed_hosts=("search.example", "*.lan"))
    assert named.get("/health", headers={"host": "search.example:80"}).status_code == 200
    assert named.get("/health", headers={"host": "pc.lan"}).status_code == 200
    assert named.get("/health", headers={"host": "localhost"}).status_code == 400  # explicit list replaces defaults
    anyhost = _client(index, tiny_encoder, host="0.0.0.0")
    assert anyhost.get("/health", headers={"host": "whatever.example"}).status_code == 200


def test_errors_never_leak_a_stack_trace(client, caplog):
    ctx = client.app.state.xmr

    def boom(*args, **kwargs):
        raise RuntimeError("secret detail /home/someone/.ssh")

    ctx.live.reader = boom
    r = client.get("/api/search", params={"q": "cat"})
    assert r.status_code == 500 and r.json() == {"error": "internal server error"}
    assert "secret" not in r.text and "Traceback" not in r.text
    assert "secret detail" in caplog.text  # the trace goes to the server log


# ---- live index updates ----------------------------------------------------------------------------------------
def test_sees_index_updates_without_restart(client, photos, index, tiny_encoder):
    def names():
        return sorted(r["path"] for r in client.get("/api/search", params={"q": "x", "k": 100}).json()["results"])

    gen0 = client.get("/health").json()["generation"]
    assert len(names()) == 5
    _make_images(photos / "new", 3, seed=5)
    (photos / "img_000.png").unlink()
    index_folder(photos, index, tiny_encoder, show_progress=False)
    after = names()
    assert len(after) == 7 and "new/img_002.png" in after and "img_000.png" not in after
    assert client.get("/health").json()["generation"] > gen0
    new_id = _id_of(client, "new/img_000.png")
    assert client.get(f"/api/items/{new_id}/media").status_code == 200


def test_never_serves_a_half_written_batch(client, photos, index, tiny_encoder):
    """While `xmr index` commits batches of 3, every search sees 5 + a whole number of batches."""
    _make_images(photos / "more", 12, seed=9)
    writer = threading.Thread(target=index_folder, args=(photos, index, tiny_encoder),
                              kwargs=dict(batch_size=3, show_progress=False))
    seen = set()
    writer.start()
    while writer.is_alive():
        seen.add(len(client.get("/api/search", params={"q": "x", "k": 100}).json()["results"]))
    writer.join()
    seen.add(len(client.get("/api/search", params={"q": "x", "k": 100}).json()["results"]))
    assert seen <= {5, 8, 11, 14, 17} and 17 in seen


# ---- CLI -------------------------------------------------------------------------------------------------------
def test_cli_serve_missing_index(capsys, tmp_path):
    from xmr.cli import main

    assert main(["serve", "--index", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no index" in err and "Traceback" not in err


def test_cli_serve_warns_when_not_loopback(monkeypatch, capsys, index):
    import uvicorn

    from xmr.cli import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setattr("xmr.encoders.create_encoder", lambda spec, device=None: _tiny(spec))
    assert main(["serve", "--index", str(index), "--host", "0.0.0.0", "--port", "8123"]) == 0
    assert calls[0]["host"] == "0.0.0.0" and calls[0]["port"] == 8123
    assert "WARNING" in capsys.readouterr().err
    assert main(["serve", "--index", str(index)]) == 0
    assert calls[1]["host"] == "127.0.0.1" and "WARNING" not in capsys.readouterr().err


def _tiny(spec):
    from xmr.encoders import ENCODERS

    enc = ENCODERS.get("tiny")(None, device="cpu")
    enc.spec = spec
    return enc



# ---- videos ----------------------------------------------------------------------------------------------------
CLIP = SAMPLES.parents[3] / "tests" / "fixtures" / "video" / "video9771.mp4"


@pytest.fixture
def video_client(tmp_path, tiny_encoder):
    pytest.importorskip("av", reason="video items need PyAV (pip install 'xmr[video]')")
    if not CLIP.exists():
        pytest.skip(f"video fixture {CLIP} missing")
    media = tmp_path / "media"
    _make_images(media, 3)
    shutil.copy(CLIP, media / "gymnastics.mp4")
    index_folder(media, tmp_path / "vidx", tiny_encoder, show_progress=False)
    return _client(tmp_path / "vidx", tiny_encoder)


def test_video_results_carry_the_best_segment(video_client, tmp_path, tiny_encoder):
    c = video_client
    videos = c.get("/api/search", params={"q": "a girl doing gymnastics", "type": "video"}).json()["results"]
    assert [v["path"] for v in videos] == ["gymnastics.mp4"]
    v = videos[0]
    assert v["media_type"] == "video" and 0 <= v["start"] < v["end"] <= 14.0
    images = c.get("/api/search", params={"q": "x", "type": "image"}).json()["results"]
    assert len(images) == 3 and all("start" not in r and "end" not in r for r in images)
    both = c.get("/api/search", params={"q": "a girl doing gymnastics", "k": 100}).json()["results"]
    assert len(both) == 4 and len({r["id"] for r in both}) == 4  # each file once
    # same ranking as `xmr search` (search_index on the store), computed here on the server's snapshot
    from xmr.index import IndexStore
    from xmr.retrieval import search_index

    with IndexStore(tmp_path / "vidx", readonly=True) as st:
        ref = search_index(st, tiny_encoder, text="a girl doing gymnastics", k=100)
    assert [(r["id"], round(r["score"], 5), r.get("start")) for r in both] == \
        [(r.id, round(r.score, 5), r.start) for r in ref]


def test_video_media_ranges_and_thumbnail(video_client):
    c = video_client
    vid = c.get("/api/search", params={"q": "x", "type": "video"}).json()["results"][0]
    data = CLIP.read_bytes()
    r = c.get(vid["media"], headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.headers["content-type"] == "video/mp4"
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}" and r.content == data[1000:2000]
    t = c.get(vid["thumbnail"])
    assert t.status_code == 200 and Image.open(io.BytesIO(t.content)).format == "JPEG"


def test_openapi_page_works_offline(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in page.text and "cdn" not in page.text.lower()
    js = client.get("/docs-assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    assert client.get("/docs-assets/../../etc/passwd").status_code == 404
    assert client.get("/docs-assets/other.js").status_code == 404
    assert "/api/search" in client.get("/openapi.json").json()["paths"]
