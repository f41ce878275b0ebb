"""The one retrieval pipeline: query kinds (hand-computed fusion), first stage + moments against brute force,
stages and their refusals, the same path in the CLI and the API, and a contract over every registered stage."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SAMPLES
from xmr.errors import ConfigError
from xmr.retrieval import Query, SearchOptions, Term, build_pipeline, encode_query


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory):
    """The 8 bundled sample images indexed with the tiny encoder."""
    from xmr import create_encoder
    from xmr.index import index_folder

    enc = create_encoder("tiny")
    d = tmp_path_factory.mktemp("retrieval") / "idx"
    index_folder(SAMPLES, d, enc, show_progress=False)
    return d, enc


@pytest.fixture
def reader(tiny_index):
    from xmr.index import open_reader

    store, r = open_reader(tiny_index[0])
    yield r
    store.close()


def _brute(reader, scores_of):
    """(ids, scores) of every item, ranked as search ranks: score desc, id asc."""
    ids = np.array(sorted(reader.get_items(range(1, 100))), np.int64)
    s = scores_of(reader.item_vectors(ids))
    order = np.lexsort((ids, -s))
    return ids[order], s[order]


# ---- queries ------------------------------------------------------------------------------------------------------
def test_weighted_terms_with_a_negative_are_the_hand_computed_linear_query(tiny_index):
    _, enc = tiny_index
    q = Query.texts(["a cat", "a dog"], weights=[2.0, 1.0], negatives=["a car"])
    emb = encode_query(enc, q)
    e = enc.encode_text(["a cat", "a dog", "a car"]).astype(np.float64)
    want = (2 * e[0] + 1 * e[1] - 1 * e[2]) / 3.0  # sum_i w_i e_i / sum_{w_i > 0} w_i
    np.testing.assert_allclose(emb.fused, want, rtol=1e-6, atol=1e-7)
    x = np.random.default_rng(0).normal(size=(5, enc.dim))
    np.testing.assert_allclose(emb.score(x), (2 * x @ e[0] + x @ e[1] - x @ e[2]) / 3, rtol=1e-9)
    # mean-emb: the normalised direction; max: the best term
    me = encode_query(enc, Query.texts(["a cat", "a dog"], fuse="mean-emb"))
    np.testing.assert_allclose(me.fused, (e[0] + e[1]) / np.linalg.norm(e[0] + e[1]), rtol=1e-6, atol=1e-7)  # float32 sums: absolute slack on near-zero components
    mx = encode_query(enc, Query.texts(["a cat", "a dog"], fuse="max"))
    np.testing.assert_allclose(mx.score(x), np.maximum(x @ e[0], x @ e[1]), rtol=1e-5)  # re-encoded in another batch
    assert len(mx.probes) == 2 and len(emb.probes) == 1


@pytest.mark.parametrize("make, match", [
    (lambda: Query(()), "empty query"),
    (lambda: Query((Term("text", "a cat", -1.0),)), "at least one positive"),
    (lambda: Query.texts(["a", "b"], fuse="max", negatives=["c"]), "positive, unweighted"),
    (lambda: Query.texts(["a", "b"], fuse="max", weights=[1, 2]), "positive, unweighted"),
    (lambda: Query((Term("image", "x.jpg"), Term("text", "b")), fuse="learned:/nowhere"), "learned"),
    (lambda: Query((Term("text", "  "),)), "empty text"),
    (lambda: Query((Term("text", "a", float("nan")),)), "finite"),
    (lambda: Query((Term("audio", "a.wav"),)), "kind"),
    (lambda: Query.texts(["a", "b"], fuse="nope"), "unknown multi-query fusion"),
])
def test_undefined_queries_are_refused_with_a_reason(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_vector_query_of_the_wrong_width_or_zero_is_refused(tiny_index):
    _, enc = tiny_index
    with pytest.raises(ConfigError, match="finite numbers"):
        encode_query(enc, Query.vector(np.ones(enc.dim + 1)))
    with pytest.raises(ConfigError, match="not all zero"):
        encode_query(enc, Query.vector(np.zeros(enc.dim)))


# ---- the pipeline against brute force -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["text", "image", "composed", "negative", "max", "vector"])
def test_every_query_kind_ranks_exactly_like_brute_force(tiny_index, reader, kind):
    _, enc = tiny_index
    img = SAMPLES / "chelsea.png"
    q = {"text": Query.text("a cat"), "image": Query.image(img),
         "composed": Query.composed(img, ["at night"]),
         "negative": Query.texts(["an animal"], negatives=["a cat"]),
         "max": Query.texts(["a cat", "a rocket"], fuse="max"),
         "vector": Query.vector(enc.encode_text(["a horse"])[0])}[kind]
    emb = encode_query(enc, q)
    out = build_pipeline(enc).search(reader, q, k=5)
    ids, scores = _brute(reader, emb.score)
    assert [r.id for r in out.results] == ids[:5].tolist()
    np.testing.assert_allclose([r.score for r in out.results], scores[:5], rtol=1e-5, atol=1e-6)
    assert [s["stage"] for s in out.stages] == ["first-stage", "moments"]


def test_composed_query_is_the_mean_of_image_and_text_similarities(tiny_index, reader):
    _, enc = tiny_index
    img = SAMPLES / "chelsea.png"
    out = build_pipeline(enc).search(reader, Query.composed(img, ["a rocket"]), k=8)
    e_img, e_txt = enc.encode_images([img])[0], enc.encode_text(["a rocket"])[0]
    vecs = reader.item_vectors([r.id for r in out.results])
    np.testing.assert_allclose([r.score for r in out.results], (vecs @ e_img + vecs @ e_txt) / 2, rtol=1e-5)


def test_candidates_without_a_reordering_stage_is_refused(tiny_index):
    with pytest.raises(ConfigError, match="--candidates only applies"):
        build_pipeline(tiny_index[1], SearchOptions(candidates=5))


def test_rescore_without_a_bank_is_refused_and_rerank_refuses_image_queries(tiny_index, reader, tmp_path):
    _, enc = tiny_index
    with pytest.raises(ConfigError, match="needs a querybank"):
        build_pipeline(enc, SearchOptions(rescore=("dsl",)))
    from xmr.rerank.base import CrossEncoder
    from xmr.retrieval.pipeline import Pipeline
    from xmr.retrieval.stages import MomentStage, RerankStage

    class Const(CrossEncoder):
        spec = "const"

        def score(self, texts, images, pairs, batch_size=64):
            return np.zeros(len(pairs), np.float32)

    pipe = Pipeline(enc, [MomentStage(), RerankStage("const", 3, cross_encoder=Const())])
    with pytest.raises(ConfigError, match="needs a text query"):
        pipe.search(reader, Query.image(SAMPLES / "horse.png"), k=3)
    out = pipe.search(reader, Query.text("a horse"), k=5)  # cross scores all 0: the top 3 keep their dual order
    plain = build_pipeline(enc).search(reader, Query.text("a horse"), k=5)
    assert [r.id for r in out.results] == [r.id for r in plain.results]
    assert [r.score for r in out.results[:3]] == [0.0, 0.0, 0.0] and out.stages[-1]["stage"] == "rerank"


def test_qbnorm_on_an_image_query_matches_dense_qbnorm_of_the_row(tiny_index, reader, tmp_path):
    """An image query re-scored by QB-Norm with a text querybank (refused before the one pipeline)."""
    from xmr.rescore import QueryBank, qb_norm

    _, enc = tiny_index
    bank = tmp_path / "bank.txt"
    texts = ["a cat", "a rocket launch", "a cup of coffee", "a horse in a field", "an astronaut", "a camera"]
    bank.write_text("\n".join(texts) + "\n")
    opts = SearchOptions(rescore=("qbnorm",), rescore_params={"qbnorm": {"beta": 20.0, "k": 1, "mode": "inverted"}},
                         bank=str(bank), candidates=8)
    q = Query.image(SAMPLES / "horse.png")
    out = build_pipeline(enc, opts).search(reader, q, k=8)
    ids = np.array(sorted(reader.get_items(range(1, 100))), np.int64)
    vecs = reader.item_vectors(ids)
    row = enc.encode_images([SAMPLES / "horse.png"]) @ vecs.T
    want = qb_norm(row, QueryBank.from_embeddings(enc.encode_text(texts), vecs), beta=20.0, k=1, mode="inverted")[0]
    order = np.lexsort((ids, -want))
    assert [r.id for r in out.results] == ids[order].tolist()
    np.testing.assert_allclose([r.score for r in out.results], want[order], rtol=1e-4, atol=1e-6)
    rec = out.stages[-1]
    assert rec["stage"] == "rescore" and rec["steps"][0]["step"] == "qbnorm" and rec["bank"] == str(bank)


# ---- one path: CLI and API ----------------------------------------------------------------------------------------
def test_cli_composed_negative_and_vector_queries(tiny_index, tmp_path, capsys):
    from xmr.cli import main

    index, enc = tiny_index
    assert main(["-q", "search", "at night", "--image", str(SAMPLES / "chelsea.png"), "--not", "a cat",
                 "--index", str(index), "--k", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [t["kind"] for t in data["query"]["terms"]] == ["image", "text", "text"]
    assert [t["weight"] for t in data["query"]["terms"]] == [1.0, 1.0, -1.0] and len(data["results"]) == 3
    v = tmp_path / "q.npy"
    np.save(v, enc.encode_text(["a horse"])[0])
    assert main(["-q", "search", "--vector", str(v), "--index", str(index), "--k", "2", "--json"]) == 0
    byvec = json.loads(capsys.readouterr().out)
    assert main(["-q", "search", "a horse", "--index", str(index), "--k", "2", "--json"]) == 0
    bytext = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in byvec["results"]] == [r["id"] for r in bytext["results"]]
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones(3))
    assert main(["-q", "search", "--vector", str(bad), "--index", str(index)]) == 2
    assert "finite numbers" in capsys.readouterr().err
    assert main(["-q", "search", "a", "b", "--weights", "1", "--index", str(index)]) == 2
    assert "--weights gives 1 weights for 2" in capsys.readouterr().err


def test_search_opens_the_index_read_only(tiny_index, tmp_path, capsys):
    """xmr search writes nothing: a stale FAISS cache is rebuilt in memory, not on disk."""
    import shutil

    from xmr.cli import main

    index = tmp_path / "copy"
    shutil.copytree(tiny_index[0], index)
    (index / "vectors.faiss").unlink()
    assert main(["-q", "search", "a cat", "--index", str(index), "--k", "2"]) == 0
    assert not (index / "vectors.faiss").exists()


def test_api_several_texts_negatives_composed_and_vector(tiny_index):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from xmr.index import open_reader
    from xmr.serve import ServeSettings, create_app

    index, enc = tiny_index
    client = TestClient(create_app(index, encoder=enc, settings=ServeSettings()), base_url="http://127.0.0.1")
    store, reader = open_reader(index)
    try:
        r = client.get("/api/search", params=[("q", "a cat"), ("q", "a kitten"), ("not", "a car"), ("k", "4")])
        assert r.status_code == 200, r.text
        body = r.json()
        want = build_pipeline(enc).search(reader, Query.texts(["a cat", "a kitten"], negatives=["a car"]), k=4)
        assert [x["id"] for x in body["results"]] == [x.id for x in want.results]
        assert [s["stage"] for s in body["stages"]] == ["first-stage", "moments"]
        png = (SAMPLES / "chelsea.png").read_bytes()
        r = client.post("/api/search/image", params={"k": 3, "text": "at night"},
                        files={"file": ("c.png", png, "image/png")})
        assert r.status_code == 200, r.text
        assert [t["kind"] for t in r.json()["query"]["terms"]] == ["image", "text"]
        v = enc.encode_text(["a horse"])[0]
        r = client.post("/api/search/vector", json={"vector": v.tolist(), "k": 2})
        want = build_pipeline(enc).search(reader, Query.text("a horse"), k=2)
        assert r.status_code == 200 and [x["id"] for x in r.json()["results"]] == [x.id for x in want.results]
        assert client.post("/api/search/vector", json={"vector": [1.0, 2.0]}).status_code == 422
        r = client.get("/api/search", params=[("q", "a"), ("q", "b"), ("fuse", "max"), ("not", "c")])
        assert r.status_code == 422 and "positive, unweighted" in r.json()["error"]
    finally:
        store.close()


def test_server_with_rescoring_stage_records_it(tiny_index, tmp_path):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from xmr.serve import ServeSettings, create_app

    index, enc = tiny_index
    bank = tmp_path / "bank.txt"
    bank.write_text("a cat\na horse\na rocket\n")
    opts = SearchOptions(rescore=("qbnorm",), bank=str(bank))
    client = TestClient(create_app(index, encoder=enc, settings=ServeSettings(), options=opts),
                        base_url="http://127.0.0.1")
    png = (SAMPLES / "horse.png").read_bytes()
    r = client.post("/api/search/image", params={"k": 3}, files={"file": ("h.png", png, "image/png")})
    assert r.status_code == 200, r.text
    assert [s["stage"] for s in r.json()["stages"]] == ["first-stage", "moments", "rescore"]
    assert r.json()["stages"][0]["depth"] == 100 and r.json()["query"] == "image upload"


# ---- contract: every registered stage runs on a small index -------------------------------------------------------
@pytest.fixture(scope="module")
def xpool_index(tmp_path_factory):
    """Three short synthetic clips indexed with an (untrained, seeded) X-Pool head over tiny: frames are kept."""
    pytest.importorskip("av", reason="video indexing needs PyAV (xmr[video])")
    from xmr import create_encoder
    from xmr.heads import create_head
    from xmr.index import index_folder
    from xmr.synth.videos import generate_videos

    d = tmp_path_factory.mktemp("xpool-contract")
    manifest = generate_videos(d / "synth", n=3, seed=2, frames=24, fps=8)
    create_head("xpool", dim=64, num_frames=4, seed=0).save(d / "head")
    enc = create_encoder(f"video:tiny+xpool@{d / 'head'}")
    index_folder(manifest.parent, d / "idx", enc, show_progress=False)
    return d / "idx", enc


@pytest.fixture(scope="module")
def experts_index(tmp_path_factory):
    """The sample images with a sidecar caption on two of them, indexed with tiny and the sidecar expert."""
    import shutil

    from xmr import create_encoder
    from xmr.index import index_folder

    d = tmp_path_factory.mktemp("experts-contract")
    shutil.copytree(SAMPLES, d / "photos", ignore=shutil.ignore_patterns("*.json", "*.md"))
    (d / "photos" / "horse.txt").write_text("a cat on a farm")
    (d / "photos" / "rocket.txt").write_text("launch day")
    enc = create_encoder("tiny")
    index_folder(d / "photos", d / "idx", enc, show_progress=False, experts=["sidecar"])
    return d / "idx", enc


def _random_tower(directory):
    """A hierarchical recipe tower with random weights at tiny's width (text query -> images needs no recipes)."""
    from xmr.heads.recipe import RecipeTower, RecipeTowerConfig, _build

    cfg = RecipeTowerConfig(text_dim=64, image_dim=64, dim=16, heads=2)
    RecipeTower(cfg, _build(cfg)).save(directory)
    return str(directory)


def _stage(name, tmp_path, request):
    """(stage, index folder, encoder) for a registered stage name."""
    from xmr.rerank.base import CrossEncoder
    from xmr.retrieval import stages as st

    class Const(CrossEncoder):
        spec = "const"

        def score(self, texts, images, pairs, batch_size=64):
            return np.arange(len(pairs), dtype=np.float32)

    bank = tmp_path / "bank.txt"
    bank.write_text("a cat\na horse\n")
    images = request.getfixturevalue("tiny_index")
    builders = {"moments": lambda: (st.MomentStage(), *images),
                "rescore": lambda: (st.RescoreStage(("csls",), {"csls": {"k": 1}}, str(bank)), *images),
                "rerank": lambda: (st.RerankStage("const", 3, cross_encoder=Const()), *images),
                "head": lambda: (lambda v: (st.HeadStage(v[1]), *v))(request.getfixturevalue("xpool_index")),
                "experts": lambda: (st.ExpertStage(), *request.getfixturevalue("experts_index")),
                "recipe": lambda: (st.RecipeStage(_random_tower(tmp_path / "tower")), *images)}
    if name not in builders:
        pytest.fail(f"stage {name!r} is registered but has no builder in tests/test_retrieval.py: add one")
    return builders[name]()


@pytest.mark.parametrize("name", __import__("xmr.retrieval", fromlist=["STAGES"]).STAGES.names())
def test_stage_contract(name, tmp_path, request):
    from xmr.index import open_reader
    from xmr.retrieval.pipeline import Pipeline
    from xmr.retrieval.stages import MomentStage

    stage, index, enc = _stage(name, tmp_path, request)
    json.dumps(stage.record())
    stages = [stage] if name == "moments" else [MomentStage(), stage]
    store, reader = open_reader(index)
    try:
        k = min(3, reader.count())
        out = Pipeline(enc, stages, candidates=6).search(reader, Query.text("a cat"), k=k)
    finally:
        store.close()
    assert len(out.results) == k and [r.rank for r in out.results] == list(range(1, k + 1))
    assert len({r.id for r in out.results}) == k and all(np.isfinite(r.score) for r in out.results)
    assert out.stages[-1]["stage"] == name


# ---- xmr eval --candidates: the search pipeline itself, on an in-memory gallery -----------------------------------
def test_eval_candidates_runs_the_search_pipeline_and_matches_the_dense_topk_emulation(tiny_encoder, capsys):
    """QB-Norm on each text's top-3: `--candidates 3` (the pipeline on a MemoryReader) ranks exactly like
    `--rescore-topk 3` (the dense emulation), with the same querybank; i2t stays dense."""
    from conftest import FIXTURES
    from xmr.data import load_dataset
    from xmr.eval import evaluate_model

    ds = load_dataset(f"coco:{FIXTURES / 'coco_tiny'}:val2017")
    bank = f"coco:{FIXTURES / 'coco_tiny'}:train2017"
    kw = dict(rescore=["qbnorm"], rescore_params={"qbnorm": {"beta": 10.0, "k": 1, "mode": "inverted"}}, bank=bank,
              show_progress=False)
    by_search = evaluate_model(ds, tiny_encoder, candidates=3, **kw)
    dense = evaluate_model(ds, tiny_encoder, rescore_topk=3, **kw)
    assert by_search["t2i"] == pytest.approx(dense["t2i"]) and by_search["i2t"] == pytest.approx(dense["i2t"])
    assert by_search["search"]["candidates"] == 3
    assert [s["stage"] for s in by_search["search"]["stages"]] == ["moments", "rescore"]
    assert by_search["rescore"][0]["t2i_by"] == "search pipeline"
    # the CLI flag, and its refusal without a stage that re-orders
    from xmr.cli import main

    assert main(["-q", "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}:val2017", "--model", "tiny",
                 "--candidates", "3"]) == 2
    assert "candidates only apply" in capsys.readouterr().err


def test_memory_reader_search_equals_brute_force(tiny_encoder):
    from xmr.retrieval import Pipeline
    from xmr.retrieval.memory import MemoryReader
    from xmr.retrieval.stages import MomentStage

    paths = sorted(str(p) for p in SAMPLES.glob("*.png"))
    vecs = tiny_encoder.encode_images(paths)
    reader = MemoryReader(vecs, paths, ["image"] * len(paths), model_spec=tiny_encoder.spec)
    out = Pipeline(tiny_encoder, [MomentStage()]).search(reader, Query.text("a horse"), k=4)
    s = vecs @ tiny_encoder.encode_text(["a horse"])[0]
    order = np.lexsort((np.arange(len(s)), -s))[:4]
    assert [r.id - 1 for r in out.results] == order.tolist() and [r.path for r in out.results][0] == paths[order[0]]
