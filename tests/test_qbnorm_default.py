"""QB-Norm on by default for ``concept`` (issue 17): the model declares its re-scoring, search / serve / eval apply
it to text queries unless ``--rescore`` says otherwise, the bundled bank's MiniLM embeddings are shipped
(fingerprint-checked), and ``xmr index`` warms the per-index bank statistics so the first search encodes no bank."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import FIXTURES, SAMPLES, run_cli

BANK = "multi30k-en-train-5k"
BANK_FILE = SAMPLES.parent / "querybanks" / f"{BANK}.txt"
LABEL = f"qbnorm (model default, bank {BANK})"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private XMR_CACHE for the querybank statistics, sharing the session's ONNX exports and class embeddings."""
    from xmr.paths import cache_dir

    shared = cache_dir()
    mine = tmp_path / "cache"
    mine.mkdir()
    for sub in ("onnx", "concept"):
        if (shared / sub).is_dir():
            (mine / sub).symlink_to(shared / sub)
    monkeypatch.setenv("XMR_CACHE", str(mine))
    return mine


@pytest.fixture
def indexed(tmp_path, cache, capsys, concept_encoder):
    """The 8 sample photos indexed with `concept` through `xmr index` (its querybank warm-up included)."""
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLES, photos, ignore=shutil.ignore_patterns("*.json", "*.md"))
    idx = tmp_path / "idx"
    code, out, err = run_cli(capsys, "index", str(photos), "--index", str(idx))
    assert code == 0, err
    return photos, idx, out


def _search(capsys, idx, *argv):
    code, out, err = run_cli(capsys, "search", *argv, "--index", str(idx), "--json")
    assert code == 0, err
    return json.loads(out), err


def _rescore_stage(d):
    return next(s for s in d["stages"] if s["stage"] == "rescore")


def _hand_qbnorm(encoder, text, vectors, beta=20.0):
    """QB-Norm (Bogolin et al. eq. for the dynamic inverted softmax) written out on the whole gallery."""
    from xmr.rescore import read_bank_texts

    texts, info = read_bank_texts(BANK)
    bank, _ = encoder.encode_bank_texts(texts, info)
    b = (bank @ vectors.T).astype(np.float64)  # (B, G)
    lse = np.log(np.exp(beta * b - (beta * b).max(0)).sum(0)) + (beta * b).max(0)
    active = np.zeros(len(vectors), bool)
    active[b.argmax(1)] = True
    s = (encoder.encode_text([text]) @ vectors.T)[0].astype(np.float64)
    return (beta * s - lse) if active[s.argmax()] else s, s


def test_default_search_is_qbnorm_equal_to_explicit_and_none_is_raw(indexed, capsys, concept_encoder):
    from xmr.index.snapshot import open_reader

    _, idx, index_out = indexed
    assert f"text searches re-scored by {LABEL}: bank statistics over 8 items computed" in index_out
    q = "a cup of coffee on a table"
    default, err = _search(capsys, idx, q)
    explicit, _ = _search(capsys, idx, q, "--rescore", "qbnorm", "--bank", str(BANK_FILE))
    named, _ = _search(capsys, idx, q, "--rescore", "qbnorm", "--bank", BANK)
    none, _ = _search(capsys, idx, q, "--rescore", "none")
    st = _rescore_stage(default)
    assert st["origin"] == "model default" and st["applied"] is True and st["summary"] == LABEL
    assert st["steps"][0]["querybank"]["embeddings"] in ("bundled", "cache", "encoded")
    assert _rescore_stage(explicit)["origin"] == "option"
    assert not any(s["stage"] == "rescore" for s in none["stages"])

    def ranking(d):
        return [(r["id"], round(r["score"], 5)) for r in d["results"]]

    assert ranking(default) == ranking(explicit) == ranking(named)
    # the hand-written QB-Norm of the same bank on the stored vectors gives the default's scores; none is the raw one
    store, reader = open_reader(str(idx))
    try:
        ids, vecs = zip(*reader.iter_vectors())
        ids, vecs = np.concatenate(ids), np.concatenate(vecs)
    finally:
        store.close()
    qb, raw = _hand_qbnorm(concept_encoder, q, vecs)
    got = {r["id"]: r["score"] for r in default["results"]}
    np.testing.assert_allclose([got[i] for i in ids], qb, rtol=0, atol=2e-3)
    assert not np.allclose(qb, raw)  # QB-Norm changed the scores (log domain)
    assert [r["id"] for r in none["results"]] == [int(ids[i]) for i in np.argsort(-raw, kind="stable")]
    np.testing.assert_allclose([r["score"] for r in none["results"]], np.sort(raw)[::-1], atol=1e-5)


def test_plain_output_says_it_and_image_queries_are_not_rescored(indexed, capsys):
    photos, idx, _ = indexed
    code, out, err = run_cli(capsys, "search", "a cat", "--index", str(idx))
    assert code == 0 and f"re-scored: {LABEL}; --rescore none turns it off" in err
    img, _ = _search(capsys, idx, "--image", str(photos / "horse.png"))
    img_none, _ = _search(capsys, idx, "--image", str(photos / "horse.png"), "--rescore", "none")
    st = _rescore_stage(img)
    assert st["applied"] is False and "not a text query" in st["skipped"] and "rescore" not in img
    assert [(r["id"], r["score"]) for r in img["results"]] == [(r["id"], r["score"]) for r in img_none["results"]]
    assert img["results"][0]["path"].endswith("horse.png") and img["results"][0]["score"] == pytest.approx(1.0)


def test_first_search_after_index_encodes_no_bank(indexed, capsys, monkeypatch):
    import xmr.encoders.concept as concept
    import xmr.retrieval.querybank as qb

    _, idx, _ = indexed
    calls = []
    monkeypatch.setattr(qb, "encode_bank_texts", lambda *a, **k: calls.append(a) or pytest.fail("bank encoded"))
    real_embed = concept.ConceptEncoder._embed
    monkeypatch.setattr(concept.ConceptEncoder, "_embed",
                        lambda self, texts: calls.append(len(texts)) or real_embed(self, texts))
    d, _ = _search(capsys, idx, "a rocket")
    assert _rescore_stage(d)["applied"] is True and calls == [1]  # the query's one MiniLM pass, nothing else


def test_index_warm_up_uses_the_shipped_embeddings(tmp_path, cache, capsys, monkeypatch):
    """During `xmr index` the 5,000 bank captions never go through MiniLM: their shipped embeddings are used."""
    import xmr.encoders.concept as concept

    photos = tmp_path / "p"
    photos.mkdir()
    for f in ("coffee.png", "rocket.jpg", "horse.png"):
        shutil.copy(SAMPLES / f, photos / f)
    sizes = []
    real_embed = concept.ConceptEncoder._embed
    monkeypatch.setattr(concept.ConceptEncoder, "_embed",
                        lambda self, texts: sizes.append(len(texts)) or real_embed(self, texts))
    code, out, err = run_cli(capsys, "index", str(photos), "--index", str(tmp_path / "i"), "--json")
    assert code == 0, err
    rep = json.loads(out)["querybank"]
    assert rep["embeddings"] == "bundled" and rep["items"] == 3 and rep["computed"] is True
    assert all(n < 100 for n in sizes)  # never the bank's 5,000 texts


def test_stale_generation_after_delete_and_add_is_recomputed(indexed, capsys, monkeypatch, concept_encoder):
    """A server keeps one pipeline: after the index changes (without xmr index's warm-up) the next text search
    computes the statistics of the new generation instead of using the old ones."""
    import xmr.retrieval.querybank as qb
    from xmr.index import index_folder
    from xmr.index.snapshot import open_reader
    from xmr.retrieval import Query, build_pipeline

    photos, idx, _ = indexed
    pipe = build_pipeline(concept_encoder)
    store, reader = open_reader(str(idx))
    first = pipe.search(reader, Query.text("a horse"), k=8)
    store.close()
    (photos / "horse.png").unlink()
    shutil.copy(SAMPLES / "camera.png", photos / "cam2.png")
    index_folder(str(photos), str(idx), concept_encoder)
    built = []
    real = qb.encode_bank_texts
    monkeypatch.setattr(qb, "encode_bank_texts", lambda *a, **k: built.append(1) or real(*a, **k))
    store, reader = open_reader(str(idx))
    try:
        assert reader.generation != first.generation
        second = pipe.search(reader, Query.text("a horse"), k=8)
        again = pipe.search(reader, Query.text("a horse"), k=8)
        ids, vecs = zip(*reader.iter_vectors())
        ids, vecs = np.concatenate(ids), np.concatenate(vecs)
    finally:
        store.close()
    assert built == [1]  # once for the new generation, then kept
    assert second.generation == reader.generation and [r.id for r in second.results] == [r.id for r in again.results]
    assert not any(r.path.endswith("horse.png") for r in second.results) and len(second.results) == 8
    qbs, _ = _hand_qbnorm(concept_encoder, "a horse", vecs)
    got = {r.id: r.score for r in second.results}
    np.testing.assert_allclose([got[i] for i in ids], qbs, atol=2e-3)


def test_asset_fingerprint_mismatch_encodes_once_and_caches(tmp_path, monkeypatch, caplog):
    from xmr.encoders import concept_bank as cb
    from xmr.errors import ConfigError

    monkeypatch.setenv("XMR_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "minilm"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights v1")
    (model / "tokenizer.json").write_text("{}")
    folder = tmp_path / "banks"
    folder.mkdir()
    texts = ["a dog runs", "two people talk", "a red car"]
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, 384)).astype(np.float32)
    calls = []

    def embed(t):
        calls.append(list(t))
        return emb * 2.0  # not unit: the loader normalises

    cb.write_asset("tiny", texts, emb, model, "test", folder=folder)
    got, how = cb.bank_sentence_embeddings("tiny", texts, model, embed, folder=folder)
    assert how["embeddings"] == "bundled" and calls == []
    np.testing.assert_allclose(got, emb / np.linalg.norm(emb, axis=1, keepdims=True), atol=1e-3)  # float16
    (model / "model.safetensors").write_bytes(b"weights v2")  # another MiniLM installed
    with caplog.at_level("INFO", logger="xmr.encoders.concept_bank"):
        got2, how2 = cb.bank_sentence_embeddings("tiny", texts, model, embed, folder=folder)
    assert how2["embeddings"] == "encoded" and calls == [texts] and "encoding its 3 texts once" in caplog.text
    got3, how3 = cb.bank_sentence_embeddings("tiny", texts, model, embed, folder=folder)
    assert how3["embeddings"] == "cache" and len(calls) == 1
    np.testing.assert_allclose(got3, got2, atol=1e-7)
    with pytest.raises(ConfigError, match="does not belong to tiny.txt"):
        cb.bank_sentence_embeddings("tiny", texts[:2], model, embed, folder=folder)


def test_shipped_asset_matches_the_installed_minilm(concept_encoder):
    """The bundled bank's float16 embeddings are the installed MiniLM's (fingerprint), and concept's bank vectors
    from them equal encode_text of the same captions."""
    from xmr.encoders.concept_bank import load_asset, minilm_fingerprint
    from xmr.rescore import read_bank_texts

    texts, info = read_bank_texts(BANK)
    emb, meta = load_asset(BANK, texts)
    assert emb.dtype == np.float16 and emb.shape == (5000, 384)
    assert meta["minilm_fingerprint"] == minilm_fingerprint(concept_encoder._text_model_dir)
    bank, how = concept_encoder.encode_bank_texts(texts, info)
    assert how["embeddings"] == "bundled" and bank.shape == (5000, concept_encoder.dim)
    np.testing.assert_allclose(bank[:40], concept_encoder.encode_text(texts[:40]), atol=2e-3)


def test_eval_records_the_model_default_and_none_turns_it_off(capsys, cache):
    spec = f"coco:{FIXTURES / 'coco_tiny'}"
    code, out, err = run_cli(capsys, "eval", "--dataset", spec, "--model", "concept", "--json")
    assert code == 0, err
    res = json.loads(out)
    r = res["rescore"][0]
    assert r["origin"] == "model default" and r["summary"] == LABEL and r["directions"] == ["t2i"]
    assert f"applied {LABEL} to t2i" in err
    assert res["i2t"] == res["before"]["i2t"]  # image -> text is never re-scored
    code, out, err = run_cli(capsys, "eval", "--dataset", spec, "--model", "concept", "--json", "--rescore", "none")
    off = json.loads(out)
    assert code == 0 and "rescore" not in off and "applied" not in err
    assert off["t2i"] == res["before"]["t2i"] and off["i2t"] == res["i2t"]
    assert res["fingerprint"]["rescore"][0]["origin"] == "model default" and "rescore" not in off["fingerprint"]


def test_models_without_a_recommendation_are_unchanged(tiny_encoder):
    from xmr.retrieval import SearchOptions, build_pipeline
    from xmr.retrieval.dense import resolve_rescore

    assert tiny_encoder.rescore_default is None
    assert not any(s.name == "rescore" for s in build_pipeline(tiny_encoder).stages)
    assert resolve_rescore(tiny_encoder, None) == (None, None, None, None)
    assert not any(s.name == "rescore" for s in build_pipeline(tiny_encoder, SearchOptions(rescore=())).stages)


@pytest.mark.parametrize("argv, message", [
    (["--rescore", "none", "--bank", BANK], "--bank needs re-scoring"),
    (["--beta", "10"], "--beta needs --rescore"),
    (["--bank", BANK], "--bank needs --rescore"),
])
def test_bad_rescore_flags(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, "search", "a cat", "--index", str(tmp_path / "none"), *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_gallery_block_bank_equals_the_row_streamed_bank():
    """Column-block streaming (bounded memory for large indexes) gives QueryBank's statistics, ties included."""
    from xmr.rescore import QueryBank
    from xmr.rescore.bank import GalleryBlockBank

    rng = np.random.default_rng(3)
    t = rng.normal(size=(37, 8)).astype(np.float32)
    v = rng.normal(size=(50, 8)).astype(np.float32)
    v[20] = v[3]  # tied columns: the activation set takes the lower one
    v[41] = v[3]
    reqs = [("lse", 20.0), ("lse", 3.0), ("active", 1), ("active", 3), ("topk_mean", 5)]
    ref = QueryBank.from_embeddings(t, v, chunk=7).compute(reqs)
    blocks = lambda: (v[a: a + 16] for a in range(0, 50, 16))  # noqa: E731
    got = GalleryBlockBank(t, blocks, 50, cols=6).compute(reqs)
    for r in reqs:
        if r[0] == "active":
            np.testing.assert_array_equal(got[r], ref[r])
        else:
            np.testing.assert_allclose(got[r], ref[r], rtol=1e-6, atol=1e-9)


def test_which_presets_recommend_qbnorm():
    from xmr.encoders.concept import CONCEPT_PRESETS, ConceptConfig
    from xmr.errors import ConfigError

    assert [n for n in CONCEPT_PRESETS.names() if CONCEPT_PRESETS.get(n).rescore] == ["adapter1", "default"]
    assert CONCEPT_PRESETS.get("default").querybank == BANK
    with pytest.raises(ConfigError, match="go together"):
        ConceptConfig(rescore="qbnorm")
    with pytest.raises(ConfigError, match="'' \\(none\\) or 'qbnorm'"):
        ConceptConfig(rescore="dsl", querybank=BANK)


def test_serve_applies_the_model_default_to_text_not_images(indexed, capsys, concept_encoder):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from xmr.retrieval import SearchOptions
    from xmr.serve import create_app

    photos, idx, _ = indexed
    cli, _ = _search(capsys, idx, "a rocket launch", "--k", "5")
    c = TestClient(create_app(idx, encoder=concept_encoder), base_url="http://127.0.0.1")
    d = c.get("/api/search", params={"q": "a rocket launch", "k": 5}).json()
    st = _rescore_stage(d)
    assert st["origin"] == "model default" and st["applied"] is True and st["summary"] == LABEL
    assert [(r["id"], round(r["score"], 5)) for r in d["results"]] == [
        (r["id"], round(r["score"], 5)) for r in cli["results"]]
    img = c.post("/api/search/image", params={"k": 3}, files={"file": ("q.png", (photos / "rocket.jpg").read_bytes(),
                                                                       "image/jpeg")}).json()
    assert _rescore_stage(img)["applied"] is False and img["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    off = TestClient(create_app(idx, encoder=concept_encoder, options=SearchOptions(rescore=())),
                     base_url="http://127.0.0.1").get("/api/search", params={"q": "a rocket launch", "k": 5}).json()
    assert not any(s["stage"] == "rescore" for s in off["stages"])


def test_incremental_update_equals_a_full_pass(tmp_path):
    """A new generation (items added, one deleted, one re-encoded) updated from the last one's statistics gives the
    statistics of a full pass; the rows whose top item left are the only rows scored against the whole index."""
    from xmr.retrieval.memory import MemoryReader
    from xmr.retrieval.querybank_update import IndexBank, vector_signature
    from xmr.rescore.bank import block_stats

    rng = np.random.default_rng(5)
    t = rng.normal(size=(40, 16)).astype(np.float32)

    def reader(vecs, ids):
        r = MemoryReader(vecs, [f"{i}.jpg" for i in ids], ["image"] * len(ids))
        r.iter_vectors = lambda chunk=4096: ((ids[a: a + chunk], vecs[a: a + chunk]) for a in range(0, len(ids), chunk))
        r.item_vectors = lambda want: vecs[np.searchsorted(ids, want)]
        return r

    reqs = [("lse", 20.0), ("active", 1), ("active", 2), ("topk_mean", 3)]
    state = tmp_path / "s.npz"
    v1 = rng.normal(size=(30, 16)).astype(np.float32)
    ids1 = np.arange(1, 31)
    b1 = IndexBank(t, reader(v1, ids1), ids1, vector_signature(v1), state)
    b1.compute(reqs)
    assert b1.update["mode"] == "full"
    top_item = ids1[np.argmax(t @ v1.T, axis=1)][0]  # bank row 0's best item: deleted below
    keep = ids1 != top_item
    v2 = np.concatenate([v1[keep], rng.normal(size=(4, 16)).astype(np.float32)])
    ids2 = np.concatenate([ids1[keep], np.arange(31, 35)])
    v2[2] = rng.normal(size=16)  # one item re-encoded in place (same id, new vector)
    b2 = IndexBank(t, reader(v2, ids2), ids2, vector_signature(v2), state)
    got = b2.compute(reqs)
    assert b2.update["mode"] == "incremental" and b2.update["new_items"] == 5 and b2.update["rows_rescored"] >= 1
    ref, _ = block_stats(t, [v2], reqs, len(v2))
    for r in reqs:
        if r[0] == "active":
            np.testing.assert_array_equal(got[r], ref[r])
        else:
            np.testing.assert_allclose(got[r], ref[r], rtol=1e-6)
