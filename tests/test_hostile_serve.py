"""Issue 19, the server: bounded upload memory, half-sent requests, swapped files, read-only indexes, and the minor
probes (Host header, k=1.0, disconnects, multipart part count, /docs CSP). Small indexes made with `tiny`."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import REPO  # noqa: E402
from xmr.index import index_folder  # noqa: E402
from xmr.serve import ServeSettings, create_app  # noqa: E402
from xmr.serve.settings import uvicorn_options  # noqa: E402
from xmr.serve.uploads import MAX_PARTS, PixelBudget, UploadError, read_body_limited  # noqa: E402

LOCAL = "http://127.0.0.1"


def _png(size=(32, 24), seed=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        (d / f"img_{i}.png").write_bytes(_png(seed=i))
    return d


@pytest.fixture
def index(tmp_path, photos, tiny_encoder) -> Path:
    idx = tmp_path / "idx"
    index_folder(photos, idx, tiny_encoder, show_progress=False)
    return idx


def _client(index, encoder, **settings) -> TestClient:
    return TestClient(create_app(index, encoder=encoder, settings=ServeSettings(**settings)), base_url=LOCAL,
                      raise_server_exceptions=False)


def _id(client, name) -> int:
    return next(r["id"] for r in client.get("/api/search", params={"q": "x", "k": 100}).json()["results"]
                if r["path"] == name)


# ---- 3. uploads: decoded pixels are rationed -----------------------------------------------------------------------
def test_pixel_budget_blocks_then_refuses():
    b = PixelBudget(100, wait_s=0.2)
    with b.hold(80):
        t0 = time.monotonic()
        with pytest.raises(UploadError) as e:
            with b.hold(30):
                pass
        assert e.value.status == 503 and time.monotonic() - t0 >= 0.19
        with b.hold(20):  # what fits goes through at once
            assert b.held == 100
    assert b.held == 0 and b.peak == 100
    b.wait_s = 5
    got = []

    def second():
        with b.hold(90):
            got.append(time.monotonic())

    first = b.hold(90)
    first.__enter__()
    th = threading.Thread(target=second)
    th.start()
    time.sleep(0.2)
    assert th.is_alive() and not got  # waiting for room
    released = time.monotonic()
    first.__exit__(None, None, None)
    th.join(5)
    assert got and got[0] >= released and b.held == 0  # got in once the first hold ended


def test_concurrent_uploads_stay_within_the_pixel_budget(index, tiny_encoder):
    # 12 clients upload 40x40 images (1,600 px) at once; the budget holds two of them
    c = _client(index, tiny_encoder, max_upload_pixels=2_000, upload_pixel_budget=3_200)
    budget = c.app.state.xmr.uploads
    seen = []
    real = budget.hold

    def spy(pixels):
        seen.append(budget.held)
        return real(pixels)

    budget.hold = spy
    with ThreadPoolExecutor(12) as ex:
        codes = list(ex.map(lambda i: c.post("/api/search/image", files={"file": ("q.png", _png((40, 40), i),
                                                                                   "image/png")}).status_code,
                            range(12)))
    assert codes == [200] * 12
    assert len(seen) == 12 and budget.peak <= 3_200 and budget.held == 0


def test_upload_declaring_huge_size_is_refused_from_its_header(index, tiny_encoder, monkeypatch):
    import xmr.serve.api as api

    buf = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buf, "PNG")  # 48 MP declared, a few KB sent
    decoded = []
    monkeypatch.setattr(api, "decode_image", lambda *a: decoded.append(1))
    c = _client(index, tiny_encoder)
    r = c.post("/api/search/image", files={"file": ("bomb.png", buf.getvalue(), "image/png")})
    assert r.status_code == 413 and "8000x6000" in r.json()["error"] and not decoded


def test_multipart_with_many_parts_is_refused_fast(index, tiny_encoder):
    c = _client(index, tiny_encoder)
    body = b"".join(b"--b\r\nContent-Disposition: form-data; name=\"x%d\"\r\n\r\nv\r\n" % i for i in range(200_000))
    body += b"--b--\r\n"
    t0 = time.monotonic()
    r = c.post("/api/search/image", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and f"more than {MAX_PARTS} parts" in r.json()["error"]
    assert time.monotonic() - t0 < 5  # was 13 s of server time


class _FakeRequest:
    def __init__(self, chunks):
        self.headers = {}
        self._chunks = chunks

    async def stream(self):
        for c in self._chunks:
            if isinstance(c, BaseException):
                raise c
            if isinstance(c, float):
                await asyncio.sleep(c)
                continue
            yield c


def test_client_disconnect_during_upload_is_one_log_line(caplog):
    from starlette.requests import ClientDisconnect

    caplog.set_level(logging.INFO, logger="xmr")
    with pytest.raises(UploadError) as e:
        asyncio.run(read_body_limited(_FakeRequest([b"abc", ClientDisconnect()]), 1000, 5))
    assert e.value.status == 400
    lines = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None and "3 bytes" in lines[0].getMessage()


def test_half_sent_body_times_out():
    t0 = time.monotonic()
    with pytest.raises(UploadError) as e:
        asyncio.run(read_body_limited(_FakeRequest([b"abc", 30.0, b"never"]), 1000, 0.3))
    assert e.value.status == 408 and time.monotonic() - t0 < 5


def test_half_sent_headers_are_closed(index, tiny_encoder):
    app = create_app(index, encoder=tiny_encoder)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    opts = uvicorn_options(ServeSettings(port=port, header_timeout_s=0.5), log_level="warning")
    srv = uvicorn.Server(uvicorn.Config(app, **opts))
    th = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 20
        while not srv.started:
            assert th.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        half = socket.create_connection(("127.0.0.1", port))
        half.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow:")  # and nothing more
        half.settimeout(10)
        t0 = time.monotonic()
        assert half.recv(100) == b""  # closed by the server
        assert time.monotonic() - t0 < 5
        whole = socket.create_connection(("127.0.0.1", port))  # a complete request is answered as before
        whole.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        whole.settimeout(10)
        assert whole.recv(100).startswith(b"HTTP/1.1 200")
        half.close()
        whole.close()
    finally:
        srv.should_exit = True
        th.join(10)
        sock.close()


# ---- 8. the file served is the file indexed -------------------------------------------------------------------------
def test_file_replaced_by_hard_link_is_not_served(index, tiny_encoder, photos, tmp_path):
    c = _client(index, tiny_encoder)
    i = _id(c, "img_1.png")
    assert c.get(f"/api/items/{i}/media").status_code == 200
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (photos / "img_1.png").unlink()
    os.link(secret, photos / "img_1.png")  # inside the root, a regular file: only its identity gives it away
    for what in ("media", "thumbnail"):
        r = c.get(f"/api/items/{i}/{what}")
        assert r.status_code == 404 and "changed since it was indexed" in r.json()["error"]
        assert b"root:" not in r.content


def test_same_size_same_mtime_replacement_is_caught_by_inode(index, tiny_encoder, photos, tmp_path):
    c = _client(index, tiny_encoder)
    i = _id(c, "img_2.png")
    p = photos / "img_2.png"
    st = p.stat()
    other = tmp_path / "other.png"
    other.write_bytes(b"\0" * st.st_size)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, p)  # same size, same mtime, another inode
    assert c.get(f"/api/items/{i}/media").status_code == 404


def test_touched_file_is_refused_until_reindexed(index, tiny_encoder, photos):
    c = _client(index, tiny_encoder)
    i = _id(c, "img_0.png")
    os.utime(photos / "img_0.png", (1e9, 1e9))
    assert c.get(f"/api/items/{i}/media").status_code == 404
    index_folder(photos, index, tiny_encoder, show_progress=False)  # same hash: only the record is updated
    assert c.get(f"/api/items/{i}/media").status_code == 200


def test_non_utf8_item_is_searched_and_served(tmp_path, tiny_encoder):
    root = tmp_path / "photos"
    root.mkdir()
    bad = os.fsdecode(os.fsencode(str(root)) + b"/bad\xffname.png")
    Path(bad).write_bytes(_png())
    index_folder(root, tmp_path / "idx", tiny_encoder, show_progress=False)
    c = _client(tmp_path / "idx", tiny_encoder)
    r = c.get("/api/search", params={"q": "x"})
    assert r.status_code == 200 and r.json()["results"][0]["path"] == "bad\\xffname.png"
    i = r.json()["results"][0]["id"]
    assert c.get(f"/api/items/{i}/media").content == Path(bad).read_bytes()
    assert c.get(f"/api/items/{i}").json()["path"] == "bad\\xffname.png"


# ---- 9. an index the user cannot write ----------------------------------------------------------------------------
_READ_ONLY_SCRIPT = textwrap.dedent("""
    import os, sys
    from fastapi.testclient import TestClient
    from xmr.cli import main
    from xmr.index import IndexStore
    from xmr.serve import create_app

    def check(idx):
        with IndexStore(idx, readonly=True) as st:
            print("immutable", st.immutable, st.count())
        assert main(["info", "--index", idx]) == 0
        assert main(["search", "a photo", "--index", idx, "-k", "2"]) == 0
        c = TestClient(create_app(idx), base_url="http://127.0.0.1")
        res = c.get("/api/search", params={"q": "x"}).json()["results"]
        print("served", len(res), c.get(res[0]["media"]).status_code, flush=True)

    warm, ro = sys.argv[1:3]
    if os.geteuid() == 0:
        # root may write anywhere, so the check runs as `nobody`: every module is loaded first (this Python lives
        # where `nobody` cannot read), then the process gives up root for good
        check(warm)
        print("--- as nobody", flush=True)
        os.setgid(65534)
        os.setuid(65534)
    assert not os.access(ro, os.W_OK)
    check(ro)
    assert main(["index", sys.argv[3], "--index", ro, "--model", "tiny"]) == 2  # refused in one line
""")


def test_read_only_index_opens_for_info_search_serve(tiny_encoder):
    """Root can write anywhere, so as root the check drops to user ``nobody`` (uid 65534) after a warm-up run,
    on a copy of the index in a folder it can read but not write; as any other user, on a chmod 555 copy."""
    base = Path(tempfile.mkdtemp(prefix="xmr-ro-"))
    try:
        os.chmod(base, 0o755)
        photos = base / "photos"  # where `nobody` can read them (pytest's tmp_path is root's alone)
        photos.mkdir()
        for i in range(3):
            (photos / f"img_{i}.png").write_bytes(_png(seed=i))
        index_folder(photos, base / "warm", tiny_encoder, show_progress=False)
        ro = base / "idx"
        shutil.copytree(base / "warm", ro)
        for f in ro.iterdir():
            os.chmod(f, 0o444)
        os.chmod(ro, 0o555)
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
        r = subprocess.run([sys.executable, "-c", _READ_ONLY_SCRIPT, str(base / "warm"), str(ro), str(photos)],
                           env=env, capture_output=True, text=True, timeout=300, cwd=str(base))
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        out = r.stdout.split("--- as nobody")[-1]
        assert "immutable True 3" in out and "served 3 200" in out, r.stdout
        assert "items:  3" in out and "readonly" not in r.stderr and "Traceback" not in r.stderr
        assert "xmr: error: cannot write index" in r.stderr and "searched and served read-only" in r.stderr
        assert not list(ro.glob("*-shm")) and not list(ro.glob("*-wal"))  # nothing was written there
    finally:
        os.chmod(base / "idx", 0o755)
        shutil.rmtree(base)


# ---- minor probes -------------------------------------------------------------------------------------------------
def test_bad_host_gets_json_400_with_security_headers(index, tiny_encoder):
    c = _client(index, tiny_encoder)
    r = c.get("/health", headers={"Host": "evil.example"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert "invalid host" in r.json()["error"]
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"


def test_k_must_be_an_integer(index, tiny_encoder):
    c = _client(index, tiny_encoder)
    assert c.get("/api/search", params={"q": "x", "k": "1.0"}).status_code == 422
    vec = [1.0] + [0.0] * (tiny_encoder.dim - 1)
    r = c.post("/api/search/vector", json={"vector": vec, "k": 1.0})
    assert r.status_code == 422 and "k" in r.json()["error"]
    assert c.post("/api/search/vector", json={"vector": vec, "k": 1}).status_code == 200


def test_docs_page_has_a_csp_allowing_only_its_own_script(index, tiny_encoder):
    c = _client(index, tiny_encoder)
    r = c.get("/docs")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in \
        csp.split("script-src")[1].split(";")[0]
    inline = re.findall(rb"<script>(.*?)</script>", r.content, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0]).digest()).decode()
    assert f"'sha256-{digest}'" in csp


def test_cli_serve_runs_uvicorn_with_the_limits(monkeypatch, index):
    import platform

    from xmr.cli import main
    from xmr.serve import uploads

    calls, arenas = [], []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setattr(uploads, "limit_malloc_arenas", lambda n=2: arenas.append(n) or True)

    def tiny(spec, device=None):
        from xmr.encoders import ENCODERS

        enc = ENCODERS.get("tiny")(None, device="cpu")
        enc.spec = spec
        return enc

    monkeypatch.setattr("xmr.encoders.create_encoder", tiny)
    assert main(["serve", "--index", str(index)]) == 0
    kw = calls[0]
    assert kw["limit_concurrency"] == 256 and kw["timeout_keep_alive"] == 5 and kw["server_header"] is False
    assert kw["http"].__name__ == "TimedH11Protocol" and arenas == [2]
    if platform.libc_ver()[0] == "glibc":
        from xmr.serve.uploads import limit_malloc_arenas

        assert limit_malloc_arenas(8) is True  # mallopt accepted (a cap of 8 is harmless for the test process)
