"""`xmr serve` per-request work (issue 16): what a repeated query no longer recomputes, and that the answers stay
the same. The latency numbers themselves come from benchmarks/serve_load.py (docs/benchmarks.md)."""
from __future__ import annotations

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
