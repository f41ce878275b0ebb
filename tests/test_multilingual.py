"""Multilingual queries (docs/multilingual.md): MLA language acquirers on the frozen MiniLM tower, their training,
language identification, Multi30K / XTD loaders, cross-lingual caption retrieval, and bad input."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from conftest import FIXTURES, run_cli
from xmr.errors import ConfigError

M30K = FIXTURES / "multi30k_tiny"
XTD = FIXTURES / "xtd_tiny"
EN = ["a dog runs in the park", "two men playing football on a field", "red car"]


def _lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


# ---- data ---------------------------------------------------------------------------------------------------------
def test_read_parallel_aligned_lines():
    from xmr.data.multi30k import read_parallel

    par = read_parallel(str(M30K), ["de", "en"], "val")
    assert par["de"] == _lines(M30K / "val.de.gz") and par["en"] == _lines(M30K / "val.en.gz")
    assert par["de"][0] == "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen"
    assert par["en"][0] == "A group of men are loading cotton onto a truck"
    assert par["images"][0] == "1018148011.jpg" and len(par["images"]) == 8


def test_read_parallel_errors(tmp_path):
    from xmr.data.multi30k import read_parallel

    with pytest.raises(ConfigError, match="no 'ja' captions; languages present: cs, de, en, fr"):
        read_parallel(str(M30K), ["ja"], "val")
    with pytest.raises(ConfigError, match="unknown Multi30K split"):
        read_parallel(str(M30K), ["de"], "dev")
    (tmp_path / "val.images.txt").write_text("a.jpg\nb.jpg\n")
    (tmp_path / "val.de").write_text("nur eine Zeile\n")
    with pytest.raises(ConfigError, match="not aligned"):
        read_parallel(str(tmp_path), ["de"], "val")
    (tmp_path / "val.de").write_text("eins\n\n")
    with pytest.raises(ConfigError, match="line 2 is empty"):
        read_parallel(str(tmp_path), ["de"], "val")
    (tmp_path / "val.fr.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ConfigError, match="unreadable caption file"):
        read_parallel(str(tmp_path), ["fr"], "val")


def test_dataset_specs(tmp_path):
    from xmr.data import load_dataset

    ds = load_dataset(f"multi30k:{M30K}:val?lang=fr&root={tmp_path}")
    assert len(ds) == 8 and ds.texts[0] == _lines(M30K / "val.fr.gz")[0]
    assert ds.media[0] == str(tmp_path / "1018148011.jpg")
    x = load_dataset(f"xtd:{XTD}?lang=de")
    assert len(x) == 6 and x.texts[1] == "Eine liegende Frau zeigt auf die Kamera"
    assert x.media[0].endswith("images/COCO_train2014_000000117071.jpg")  # "#367178" caption id dropped
    with pytest.raises(ConfigError, match="xtd has one split"):
        load_dataset(f"xtd:{XTD}:val")


# ---- language identification ---------------------------------------------------------------------------------------
def test_detect_rule():
    from xmr.encoders.lang.langid import detect

    langs = ("en", "de", "fr", "cs")
    assert detect("ein Hund läuft im Park", langs).lang == "de"
    assert detect("un chien court dans le parc", langs).lang == "fr"
    assert detect("Dva psi si hrají na trávě", langs).lang == "cs"
    assert detect("a dog runs in the park", langs).lang == "en"
    short = detect("dog", langs)  # too short to be sure: the English tower, as before
    assert short.lang == "en" and short.how == "default"
    es = detect("un perro corre en el parque", langs)  # an unsupported language: English, and it is reported
    assert es.lang == "en" and es.detected == "es"
    assert detect("", langs).lang == "en"
    assert detect("ein Hund", langs, lang="FR").lang == "fr"  # explicit wins
    with pytest.raises(ConfigError, match=r"'ja' is not supported by this model; supported: en \(English\), de"):
        detect("犬", langs, lang="ja")


def test_langid_cache_equals_the_wheels_model(tmp_path, monkeypatch):
    """The uncompressed cache of py3langid's model (written on first use, read without LZMA afterwards) scores
    exactly as py3langid's own loader; a damaged cache file is dropped and the wheel's model used."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from xmr.encoders.lang.langid import _load_full

    monkeypatch.setenv("XMR_CACHE", str(tmp_path))
    ref = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    texts = ["ein Hund läuft im Park", "un chien court", "Dva psi", "a dog", "犬が走る", "", "x" * 500]
    written = _load_full(LanguageIdentifier, MODEL_FILE)  # first use: decodes and writes the cache
    (cached,) = (tmp_path / "langid").glob("model-*.npz")
    read = _load_full(LanguageIdentifier, MODEL_FILE)  # second: from the cache
    for ident in (written, read):
        assert ident.labels == ref.labels
        for t in texts:
            assert ident.classify(t) == ref.classify(t)
            np.testing.assert_array_equal(np.asarray(ident.rank(t), dtype=object), np.asarray(ref.rank(t), dtype=object))
    cached.write_bytes(b"not a zip")
    assert _load_full(LanguageIdentifier, MODEL_FILE).classify(texts[0]) == ref.classify(texts[0])
    assert not cached.exists()  # removed, so the next process writes a good one


# ---- the default model ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def english_only():
    from xmr import create_encoder

    return create_encoder("concept+lang:none")


def test_english_vectors_unchanged(concept_encoder, english_only):
    """English queries give bit-for-bit the vectors of the model without acquirers (and never load torch's tower)."""
    assert concept_encoder.capabilities.languages == ("en", "cs", "de", "fr")
    assert english_only.capabilities.languages == ("en",)
    a = english_only.encode_text(EN)
    assert np.array_equal(concept_encoder.encode_text(EN), a)
    assert np.array_equal(concept_encoder.encode_text(EN, lang="en"), a)


def test_foreign_query_lands_near_its_translation(concept_encoder, english_only):
    """Bundled acquirers: each German / French / Czech fixture caption is closer to its own English translation
    than to any other English caption, and closer than the floor (the English tower fed the same text) puts it."""
    from xmr.data.multi30k import read_parallel

    par = read_parallel(str(M30K), ["en", "de", "fr", "cs"], "val")
    g = english_only.encode_text(par["en"])
    for lang in ("de", "fr", "cs"):
        q = concept_encoder.encode_text(par[lang])  # detected per caption
        routed = [d["lang"] for d in concept_encoder.text_languages(par[lang])]
        assert routed.count(lang) >= 7, routed
        s = q @ g.T
        assert (s.argmax(1) == np.arange(8)).mean() >= 0.75, (lang, s.argmax(1))
        floor = english_only.encode_text(par[lang]) @ g.T
        assert np.diag(s).mean() > np.diag(floor).mean()


def test_bad_language_input(concept_encoder):
    with pytest.raises(ConfigError, match="supported: en, cs, de, fr"):
        concept_encoder.encode_text(["perro"], lang="es")
    with pytest.raises(ConfigError, match="no acquirer for 'ja'"):
        from xmr import create_encoder

        create_encoder("concept+lang:de,ja")
    with pytest.raises(ConfigError, match="needs languages"):
        from xmr import create_encoder

        create_encoder("concept+lang:")
    # mixed-language query: one tower for the whole text, the one the identifier scores highest, and recorded
    [d] = concept_encoder.text_languages(["ein Hund im Park, a dog in the park, der schnell läuft"])
    assert d["lang"] in ("en", "de") and d["how"] in ("detected", "default")
    # a very long German query: truncated at the acquirer's 48 tokens, finite unit vector
    v = concept_encoder.encode_text(["ein Hund läuft im Park " * 400], lang="de")
    assert np.isfinite(v).all() and abs(np.linalg.norm(v) - 1) < 1e-4
    # empty text: the English tower (nothing to detect), as before
    assert concept_encoder.text_languages([""])[0]["lang"] == "en"


# ---- training ------------------------------------------------------------------------------------------------------
def _train(out, epochs, resume=False, tokenizer=""):
    from xmr.train.mla import MLATrainConfig, train_acquirer

    cfg = MLATrainConfig(lang="de", epochs=epochs, steps_per_epoch=2, batch_size=4, val_size=8, vocab_size=200,
                         embed_rank=16, bottleneck=8, max_length=16, warmup_steps=1, tokenizer=tokenizer)
    return train_acquirer(cfg, str(M30K), out, resume=resume)


def test_train_resume_and_load(tmp_path):
    import torch

    from xmr.encoders.lang.acquirer import load_acquirer

    info = _train(tmp_path / "a", 2)
    assert info["steps"] == 4 and info["trainable_params"] < info["frozen_params"] / 10
    rows = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step") and len(rows) == 4  # header, epoch 0 (untrained), 1, 2
    assert (tmp_path / "a" / "curve.png").stat().st_size > 1000
    tok = str(tmp_path / "a" / "tokenizer.json")  # one vocabulary (the WordPiece trainer's ties vary by run)
    _train(tmp_path / "b", 1, tokenizer=tok)
    with pytest.raises(ConfigError, match="already holds a training run"):
        _train(tmp_path / "b", 2, tokenizer=tok)
    _train(tmp_path / "b", 2, resume=True, tokenizer=tok)  # epoch 2 from epoch 1's checkpoint: the same batches, the same weights
    a, b = load_acquirer(tmp_path / "a"), load_acquirer(tmp_path / "b")
    assert a.cfg == b.cfg
    for (k, x), (_, y) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=0, atol=2e-3, msg=k)  # fp16 files
    assert json.loads((tmp_path / "a" / "config.json").read_text())["model"] == "xmr-mla-acquirer"
    from xmr import create_encoder

    enc = create_encoder(f"concept+lang:de@{tmp_path / 'a'}")
    assert enc.capabilities.languages == ("en", "de")
    assert enc.multilingual.paths["de"] == (tmp_path / "a").resolve()


def test_cli_train_text_refuses_bad_input(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train-text", "--method", "mla", "--lang", "de", "--data", f"coco:{M30K}",
                           "--out", str(tmp_path / "o"))
    assert code == 2 and "give multi30k:DIR" in err
    code, _, err = run_cli(capsys, "train-text", "--method", "mla", "--lang", "ja", "--data", f"multi30k:{M30K}",
                           "--out", str(tmp_path / "o"))
    assert code == 2 and "no 'ja' captions" in err and not (tmp_path / "o").exists()


# ---- evaluation ----------------------------------------------------------------------------------------------------
def test_crosslingual_eval_cli(capsys):
    code, out, _ = run_cli(capsys, "eval", "--dataset", f"multi30k:{M30K}:val", "--query-lang", "de", "--json")
    assert code == 0
    res = json.loads(out)
    assert res["queries"] == 8 and res["route"] == "explicit" and res["t2i"]["R@10"] == 100.0
    assert res["t2i"]["R@1"] >= 75.0
    code, out, _ = run_cli(capsys, "eval", "--dataset", f"xtd:{XTD}", "--query-lang", "fr", "--route", "english",
                           "--json")
    assert code == 0 and json.loads(out)["queries"] == 6
    code, _, err = run_cli(capsys, "eval", "--dataset", f"multi30k:{M30K}:val", "--query-lang", "en")
    assert code == 2 and "both 'en'" in err


# ---- search and serve ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def samples_index(tmp_path_factory, concept_encoder):
    from conftest import SAMPLES
    from xmr.index import index_folder

    idx = tmp_path_factory.mktemp("ml_idx")
    index_folder(SAMPLES, idx, concept_encoder, show_progress=False)
    return idx


def test_search_german_finds_what_english_finds(capsys, samples_index):
    for en_q, de_q, top in (("a horse in a field", "ein Pferd auf einer Wiese", "horse.png"),
                            ("a cup of coffee", "eine Tasse Kaffee", "coffee.png")):
        code, out, _ = run_cli(capsys, "search", en_q, "--index", str(samples_index), "--json")
        en = json.loads(out)
        code, out, _ = run_cli(capsys, "search", de_q, "--index", str(samples_index), "--json")
        de = json.loads(out)
        assert code == 0 and de["languages"][0]["lang"] == "de" and de["languages"][0]["how"] == "detected"
        assert en["languages"][0]["lang"] == "en"
        assert de["results"][0]["path"] == en["results"][0]["path"] and de["results"][0]["path"].endswith(top)
    code, out, _ = run_cli(capsys, "search", "eine Katze", "--lang", "de", "--index", str(samples_index), "--json")
    assert code == 0 and json.loads(out)["languages"] == [{"lang": "de", "how": "explicit", "detected": None,
                                                           "confidence": None}]
    code, _, err = run_cli(capsys, "search", "un gato", "--lang", "es", "--index", str(samples_index))
    assert code == 2 and "supported: en, cs, de, fr" in err


def test_serve_lang(samples_index, concept_encoder):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from xmr.serve import ServeSettings, create_app

    c = TestClient(create_app(samples_index, encoder=concept_encoder, settings=ServeSettings()),
                   base_url="http://127.0.0.1", raise_server_exceptions=False)
    r = c.get("/api/search", params={"q": "ein Hund läuft im Park", "k": 2})
    assert r.status_code == 200 and r.json()["languages"][0]["lang"] == "de"
    r = c.get("/api/search", params={"q": "a cat", "k": 2, "lang": "fr"})
    assert r.status_code == 200 and r.json()["languages"][0]["how"] == "explicit"
    r = c.get("/api/search", params={"q": "un gato", "lang": "es"})
    assert r.status_code == 422 and "supported: en, cs, de, fr" in r.text


# ---- the benchmark's agreement measures (benchmarks/multilingual.py, part B) ---------------------------------------
def test_benchmark_agreement_hand_computed():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "multilingual.py"
    spec = importlib.util.spec_from_file_location("bench_multilingual", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    images = np.eye(6)  # score of query v for image i = v[i]
    q = np.array([[5, 4, 3, 2, 1, 0], [0, 0, 0, 0, 2, 1]], float)  # top-2: [0, 1] and [4, 5]
    ref = np.array([[4, 5, 0, 0, 0, 0], [3, 0, 0, 0, 0, 1]], float)  # top-2: [1, 0] and [0, 5]
    assert bench.agreement(q, ref, images, k=2) == {"same_top1_%": 0.0, "en_top1_in_top2_%": 50.0,
                                                    "top2_overlap_%": 75.0}
    # leaving image 0 out of pair 0 and image 4 out of pair 1: top-2 [1, 2] vs [1, 2]; [5, 0] vs [0, 5]
    assert bench.agreement(q, ref, images, k=2, exclude=np.array([0, 4])) == {
        "same_top1_%": 50.0, "en_top1_in_top2_%": 100.0, "top2_overlap_%": 100.0}
