"""Composed queries through `xmr serve`: the REST API (compose=learned / fusion, empty texts, a composer of another
model, an image that cannot be decoded) and the web page's "changed" box in a real browser (Playwright + Chromium,
as tests/test_serve_browser.py)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import SAMPLES

pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from xmr.compose import create_composer, save_composer  # noqa: E402
from xmr.errors import ConfigError  # noqa: E402
from xmr.index import index_folder  # noqa: E402
from xmr.serve import ServeSettings, create_app  # noqa: E402

LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("composed_serve")
    photos = root / "photos"
    shutil.copytree(SAMPLES, photos, ignore=shutil.ignore_patterns("*.json", "*.md"))
    index_folder(photos, root / "idx", tiny_encoder, show_progress=False)
    save_composer(create_composer("tirg", dim=tiny_encoder.dim, hidden=16, encoder="tiny"), root / "tirg")
    save_composer(create_composer("tirg", dim=tiny_encoder.dim + 2, hidden=16), root / "wide")
    return root


def _client(setup, encoder, composer=None) -> TestClient:
    app = create_app(setup / "idx", encoder=encoder, settings=ServeSettings(composer=composer))
    return TestClient(app, base_url=LOCAL, raise_server_exceptions=False)


def _post(c, params, data=None):
    data = data if data is not None else (SAMPLES / "chelsea.png").read_bytes()
    return c.post("/api/search/image", params=params, files={"file": ("q.png", data, "image/png")})


def test_api_composes_with_the_servers_composer(setup, tiny_encoder):
    c = _client(setup, tiny_encoder, composer=str(setup / "tirg"))
    learned = _post(c, {"text": "in red", "k": 8})
    assert learned.status_code == 200, learned.text
    assert learned.json()["query"] == {"image": "image upload", "text": ["in red"], "composer": "tirg"}
    fusion = _post(c, {"text": "in red", "k": 8, "compose": "fusion"})
    assert fusion.status_code == 200 and "composer" not in str(fusion.json()["query"])
    scores = lambda r: [x["score"] for x in r.json()["results"]]  # noqa: E731
    assert scores(learned) != scores(fusion)  # a different query vector, not the fusion under another name
    assert _post(c, {"k": 3}).json()["query"] == "image upload"  # the image alone is unchanged


def test_api_composed_upload_drops_its_indexed_copy(setup, tiny_encoder):
    """An uploaded reference that is indexed (same content) is left out of a composed search unless
    keep_reference=true; an image-only search still finds it."""
    c = _client(setup, tiny_encoder, composer=str(setup / "tirg"))

    def paths(params):
        r = _post(c, {"k": 4, **params})
        assert r.status_code == 200, r.text
        return [x["path"] for x in r.json()["results"]]

    kept = paths({"text": "in red", "keep_reference": "true"})
    assert any(p.endswith("chelsea.png") for p in kept), "the untrained TIRG ranks the reference high: the case"
    dropped = paths({"text": "in red"})
    assert len(dropped) == 4 and not any(p.endswith("chelsea.png") for p in dropped)
    assert [p for p in kept if not p.endswith("chelsea.png")] == dropped[:3]
    assert not any(p.endswith("chelsea.png") for p in paths({"text": "in red", "compose": "fusion"}))
    assert any(p.endswith("chelsea.png") for p in paths({}))


@pytest.mark.parametrize("params, status, message", [
    ({"text": "  "}, 422, "empty modification text"),
    ({"text": ["red", ""]}, 422, "empty modification text"),
    ({"compose": "learned"}, 422, "compose needs a modification text"),
    ({"text": "red", "compose": "learned"}, 422, "this server has no composer"),
    ({"text": "red", "compose": "other"}, 422, ""),
])
def test_api_bad_composed_queries(setup, tiny_encoder, params, status, message):
    c = _client(setup, tiny_encoder)
    r = _post(c, params)
    assert r.status_code == status and message in r.json()["error"]


def test_api_undecodable_image_with_text(setup, tiny_encoder):
    c = _client(setup, tiny_encoder, composer=str(setup / "tirg"))
    r = _post(c, {"text": "in red"}, data=b"\x89PNG\r\n\x1a\n broken")
    assert 400 <= r.status_code < 500 and "error" in r.json()
    assert _post(c, {"text": "in red"}).status_code == 200  # the server is unharmed


def test_server_refuses_a_composer_of_another_width(setup, tiny_encoder):
    with pytest.raises(ConfigError, match="works on 66-d embeddings"):
        create_app(setup / "idx", encoder=tiny_encoder, settings=ServeSettings(composer=str(setup / "wide")))


# ---------------------------------------------------------------------------------------------- in a browser


def test_changed_box_sends_a_composed_query(setup, tiny_encoder):
    pytest.importorskip("uvicorn", reason="xmr serve needs the serve extra")
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need: pip install -e '.[browser]'")
    from test_serve_browser import CHROMIUM, CHROMIUM_ARGS, _serve

    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM}")
    app = create_app(setup / "idx", encoder=tiny_encoder, settings=ServeSettings(composer=str(setup / "tirg")))
    gen = _serve(app)
    url = next(gen)
    try:
        with sync_api.sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pg = b.new_page()
            errors = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.goto(url + "/")
            pg.locator("#modify").fill("in red")
            with pg.expect_response(lambda r: "/api/search/image" in r.url) as resp:
                pg.locator("#image-file").set_input_files(str(SAMPLES / "chelsea.png"))
            assert "text=in+red" in resp.value.url and resp.value.status == 200
            assert resp.value.json()["query"]["composer"] == "tirg"
            pg.locator("#status").filter(has_text="changed “in red”").wait_for(timeout=15_000)
            assert pg.locator("#results .card").count() > 0
            pg.locator("#modify").fill("")
            with pg.expect_response(lambda r: "/api/search/image" in r.url) as resp:
                pg.locator("#image-file").set_input_files(str(SAMPLES / "horse.png"))
            assert "text=" not in resp.value.url  # an empty box: the image alone
            out = Path(__file__).resolve().parents[1] / "artifacts"
            out.mkdir(exist_ok=True)
            pg.screenshot(path=str(out / "serve_composed.png"))
            assert errors == []
            b.close()
    finally:
        next(gen, None)
    assert os.path.isdir(setup / "idx")
