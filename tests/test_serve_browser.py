"""`xmr serve` end to end in a real browser: headless Debian Chromium driven by Playwright, against uvicorn on a
free loopback port. Types a query, checks the first result, walks the results with the keyboard, searches by image
upload, and saves a screenshot to artifacts/ (and to docs/img/serve.png with XMR_UPDATE_SCREENSHOT=1)."""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, SAMPLES

pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need: pip install -e '.[browser]'")

CHROMIUM = os.environ.get("XMR_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

# flags for a root, offline, sandbox-less machine (see the machine notes): no GPU, no background networking
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _serve(app):
    """Run ``app`` with uvicorn in a thread on a free loopback port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a free loopback port, held from here on: no race with other processes
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, concept_encoder):
    """The bundled samples indexed with the default model (the same index as the API tests', built once)."""
    from test_serve_api import concept_samples_index
    from xmr.serve import create_app

    yield from _serve(create_app(concept_samples_index(tmp_path_factory, concept_encoder), encoder=concept_encoder))


@pytest.fixture(scope="module")
def video_server(tmp_path_factory, tiny_encoder):
    """A video (the test fixture clip) and two images, indexed with the fast `tiny` encoder."""
    import shutil

    pytest.importorskip("av", reason="video items need PyAV (pip install 'xmr[video]')")
    from xmr.index import index_folder
    from xmr.serve import create_app

    media = tmp_path_factory.mktemp("media")
    shutil.copy(REPO / "tests" / "fixtures" / "video" / "video9771.mp4", media / "gymnastics.mp4")
    for name in ("coffee.png", "horse.png"):
        shutil.copy(SAMPLES / name, media / name)
    idx = tmp_path_factory.mktemp("vidx")
    index_folder(media, idx, tiny_encoder, show_progress=False)
    yield from _serve(create_app(idx, encoder=tiny_encoder))


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module (Playwright gives it a fresh temporary --user-data-dir)."""
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page per test; ``page.js_errors`` collects uncaught exceptions and console errors (failed loads)."""
    ctx = browser.new_context(viewport={"width": 1100, "height": 760})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.js_errors = errors
    yield pg
    ctx.close()


def _save_screenshot(pg, name: str) -> None:
    out = REPO / "artifacts"
    out.mkdir(exist_ok=True)
    pg.screenshot(path=str(out / name), full_page=True)
    if os.environ.get("XMR_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs" / "img").mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(REPO / "docs" / "img" / "serve.png"))


def test_text_search_in_the_browser(server, page):
    page.goto(server + "/")
    page.evaluate("document.activeElement.blur()")  # the box has autofocus; "/" must bring focus back to it
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type("a facial photo of a tabby cat")
    page.keyboard.press("Enter")
    first = page.locator("#results .card").first
    first.wait_for(timeout=15_000)
    assert first.locator(".path").inner_text() == "chelsea.png"
    assert "result" in page.locator("#status").inner_text()
    # the default model's QB-Norm on text queries is said next to the results
    assert "re-scored: qbnorm (model default, bank multi30k-en-train-5k)" in page.locator("#status").inner_text()
    assert page.url.endswith("?q=a+facial+photo+of+a+tabby+cat&type=all")
    # every thumbnail actually loaded (decoded by the browser)
    # (polled from Python: wait_for_function would need 'unsafe-eval', which the page's CSP rightly forbids)
    deadline = time.monotonic() + 15
    js = "Array.from(document.querySelectorAll('#results img')).every(i => i.complete && i.naturalWidth > 0)"
    while not page.evaluate(js):
        assert time.monotonic() < deadline, "thumbnails did not load"
        time.sleep(0.1)
    # keyboard: ArrowDown from the box to the first result, ArrowRight to the second, Esc back to the box
    page.locator("#q").focus()
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.dataset.rank") == "1"
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.dataset.rank") == "2"
    page.keyboard.press("ArrowLeft")
    _save_screenshot(page, "serve.png")
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") == "q"
    assert page.js_errors == []


def test_errors_and_image_upload_in_the_browser(server, page):
    page.goto(server + "/?type=video&q=a+cat")  # no videos indexed: an empty result, not an error
    page.locator("#status").filter(has_text="No results").wait_for(timeout=15_000)
    page.select_option("#type", "all")
    page.locator("#results .card").first.wait_for(timeout=15_000)
    page.set_input_files("#image-file", str(SAMPLES / "coffee.png"))
    page.locator("#status").filter(has_text="coffee.png").wait_for(timeout=15_000)
    assert page.locator("#results .card .path").first.inner_text() == "coffee.png"
    page.set_input_files("#image-file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}])
    page.locator("#status.error").wait_for(timeout=15_000)
    assert "not an image" in page.locator("#status").inner_text()
    assert page.locator("#results .card").count() == 0
    assert [e for e in page.js_errors if "status of 400" not in e] == []  # only the refused upload failed


def test_video_result_plays_its_segment(video_server, page):
    page.goto(video_server + "/?type=video&q=a+girl+doing+gymnastics")
    card = page.locator("#results .card").first
    card.wait_for(timeout=15_000)
    assert card.locator(".path").inner_text() == "gymnastics.mp4"
    src = card.locator("video").get_attribute("src")
    start, end = (float(x) for x in src.split("#t=")[1].split(","))
    assert 0 <= start < end
    assert card.locator(".seg").inner_text().count(":") == 2  # "m:ss.s – m:ss.s"
    card.focus()  # focusing a video result plays its matched segment
    deadline = time.monotonic() + 15
    js = "(() => { const v = document.querySelector('#results video'); return [v.currentTime, v.paused, v.error && v.error.code]; })()"
    while True:
        t, paused, err = page.evaluate(js)
        assert err is None, f"video error code {err}"
        if not paused and start <= t <= end + 0.5:
            break
        assert time.monotonic() < deadline, f"video did not play its segment (t={t}, paused={paused})"
        time.sleep(0.1)
    page.locator("#q").focus()  # blur: playback stops
    assert page.evaluate(js)[1] is True
    assert page.js_errors == []


def test_moment_search_in_the_browser(video_server, page):
    """The type selector's "Moments": the results are the API's type=moment moments, each card shows its start -
    end and plays from its start."""
    import json
    import urllib.request

    page.goto(video_server + "/")
    page.select_option("#type", "moment")
    page.fill("#q", "a girl doing gymnastics")
    page.press("#q", "Enter")
    card = page.locator("#results .card").first
    card.wait_for(timeout=15_000)
    assert "type=moment" in page.url
    with urllib.request.urlopen(video_server + "/api/search?q=a+girl+doing+gymnastics&type=moment") as r:
        api = json.load(r)
    assert api["type"] == "moment" and api["results"]
    assert page.locator("#results .card").count() == len(api["results"])
    first = api["results"][0]
    src = card.locator("video").get_attribute("src")
    assert src.endswith(f"#t={first['start']},{first['end']}")
    seg = card.locator(".seg").inner_text()
    m, s = divmod(first["start"], 60)
    assert seg.startswith(f"{int(m)}:{s:04.1f}")  # "m:ss.s – m:ss.s", the moment's start first
    card.focus()  # focusing a moment plays it from its start
    deadline = time.monotonic() + 15
    js = "(() => { const v = document.querySelector('#results video'); return [v.currentTime, v.paused]; })()"
    while True:
        t, paused = page.evaluate(js)
        if not paused and first["start"] <= t <= first["end"] + 0.5:
            break
        assert time.monotonic() < deadline, f"the moment did not play from its start (t={t}, paused={paused})"
        time.sleep(0.1)
    assert page.js_errors == []


def test_docs_page_runs_under_its_csp(video_server, page):
    """/docs has a Content-Security-Policy (issue 19) that still lets Swagger UI run: its one inline script (which
    starts Swagger UI) is allowed by hash, the bundle and styles by 'self'. A refused script or style is a console
    error "Refused to ...". (Swagger UI 4.15 of the swagger-ui-bundle wheel then says it cannot render an OpenAPI
    3.1 document: a separate, older problem.)"""
    resp = page.goto(f"{video_server}/docs")
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    page.wait_for_selector("#swagger-ui .swagger-ui", timeout=30_000)  # built by the inline script
    refused = [e for e in page.js_errors if "Refused" in e or "Content Security Policy" in e]
    assert refused == []


@pytest.fixture(scope="module")
def experts_server(tmp_path_factory, tiny_encoder):
    """Three images, one with a sidecar caption, indexed with `tiny` and the sidecar expert."""
    import shutil

    from xmr.index import index_folder
    from xmr.serve import create_app

    media = tmp_path_factory.mktemp("experts-media")
    for name in ("coffee.png", "horse.png", "rocket.jpg"):
        shutil.copy(SAMPLES / name, media / name)
    (media / "horse.json").write_text('{"title": "Bella the mare at the EXIT gate"}')
    idx = tmp_path_factory.mktemp("eidx")
    index_folder(media, idx, tiny_encoder, show_progress=False, experts=["sidecar"])
    yield from _serve(create_app(idx, encoder=tiny_encoder))


def test_expert_match_and_snippet_in_the_browser(experts_server, page):
    page.goto(experts_server + "/?q=Bella+the+mare+at+the+EXIT+gate")
    card = page.locator("#results .card").first
    card.wait_for(timeout=15_000)
    assert card.locator(".path").inner_text() == "horse.png"
    assert card.locator(".expert-name").inner_text().lower() == "sidecar"
    assert card.locator(".snippet").inner_text() == "Bella the mare at the EXIT gate"
    assert card.locator(".snippet").get_attribute("title").startswith("title: ")
    # a quoted word is an exact phrase over the experts' text: only the item that holds it
    page.goto(experts_server + "/?q=%22exit%22+a+photo")
    page.locator("#status").filter(has_text="1 result").wait_for(timeout=15_000)
    assert page.locator("#results .card .path").all_inner_texts() == ["horse.png"]


@pytest.fixture(scope="module")
def fuser_server(tmp_path_factory, tiny_encoder):
    """The sidecar index of tests/test_serve_fusion.py served with its trained LAFF fuser."""
    from test_serve_fusion import build_fused

    from xmr.retrieval import SearchOptions
    from xmr.serve import create_app

    idx, fusers = build_fused(tmp_path_factory, tiny_encoder)
    yield from _serve(create_app(idx, encoder=tiny_encoder,
                                 options=SearchOptions(expert_fusion=f"laff:{fusers['laff']}")))


def test_trained_fuser_weights_in_the_browser(fuser_server, page):
    page.goto(fuser_server + "/?q=side+text+about+the+horse")
    card = page.locator("#results .card").first
    card.wait_for(timeout=15_000)
    assert card.locator(".expert-name").inner_text().lower() in ("visual", "sidecar")
    shown = card.locator(".weights").inner_text()  # "fused: visual 0.52 · sidecar 0.48"
    parts = dict(p.rsplit(" ", 1) for p in shown.removeprefix("fused: ").split(" · "))
    assert set(parts) <= {"visual", "sidecar"} and "visual" in parts
    assert abs(sum(float(v) for v in parts.values()) - 1.0) < 0.02
    assert page.js_errors == []
