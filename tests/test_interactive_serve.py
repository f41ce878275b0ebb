"""`xmr serve`'s interactive routes: /api/ask (Ask&Confirm) and /api/search/feedback (Rocchio), on the bundled
samples indexed with `concept`; bad input is a 422 with a message and changes nothing."""
from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx: pip install -e '.[serve,browser]'")

from test_serve_api import _client, concept_samples_index  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory, concept_encoder):
    return _client(concept_samples_index(tmp_path_factory, concept_encoder), concept_encoder)


def test_ask_proposes_and_confirm_refines(client):
    r = client.get("/api/ask", params={"q": "an animal", "k": 3})
    assert r.status_code == 200, r.text
    d = r.json()
    assert len(d["results"]) == 3 and len(d["proposals"]) == 5
    assert all(0 <= p["p_yes"] <= 1 and 0 <= p["gain"] <= 1 for p in d["proposals"])
    r = client.get("/api/ask", params={"q": "an animal", "k": 3, "confirm": "tabby cat"})
    d = r.json()
    assert d["results"][0]["path"] == "chelsea.png" and d["confirmed"] == ["tabby cat"]
    assert "tabby cat" not in [p["detail"] for p in d["proposals"]]
    assert d["query"] == "an animal, tabby cat"


def test_feedback_moves_the_query(client):
    base = client.get("/api/search", params={"q": "an animal", "k": 8}).json()["results"]
    cat = next(r["id"] for r in base if r["path"] == "chelsea.png")
    top = base[0]["id"]
    assert top != cat
    r = client.get("/api/search/feedback", params={"q": "an animal", "k": 3, "good": cat, "bad": top,
                                                   "shown": [x["id"] for x in base]})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["results"][0]["id"] == cat and d["query"]["feedback"] == {"good": [cat], "bad": [top]}


@pytest.mark.parametrize("path, params, msg", [
    ("/api/ask", {"q": "an animal", "confirm": "no such detail zz"}, "unknown detail"),
    ("/api/ask", {"q": "an animal", "confirm": "tabby cat", "reject": "tabby cat"}, "both confirmed and rejected"),
    ("/api/ask", {"q": "   "}, "empty query"),
    ("/api/search/feedback", {"q": "an animal", "good": 999999}, "not in the index"),
    ("/api/search/feedback", {"q": "an animal", "good": 1, "shown": [2, 3]}, "not in the results shown"),
    ("/api/search/feedback", {"q": "an animal"}, "at least one good or bad"),
    ("/api/search/feedback", {"q": "an animal", "good": "x"}, ""),
])
def test_bad_interactive_requests(client, path, params, msg):
    before = client.get("/health").json()
    r = client.get(path, params=params)
    assert r.status_code == 422 and msg in r.json()["error"]
    assert client.get("/health").json() == before
