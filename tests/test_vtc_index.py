"""VTC's context adapter from the user's commands: comments given in ``xmr index --manifest`` become the sidecar
expert's rows, ``xmr train-fusion --fuser vtc`` trains the adapter on them, ``xmr search`` / ``xmr serve
--expert-fusion vtc:DIR`` score every candidate as ``q . normalize(v + r)`` with ``r`` the adapter's residual over
the item's comments (recomputed here from the manifest's comments and :mod:`xmr.heads.vtc`)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import SAMPLES, run_cli

COMMENTS = {"horse.png": ["what a lovely mare", "first!"], "coffee.png": ["best espresso in town"],
            "rocket.jpg": ["liftoff!", "so loud", "subscribe to my channel"], "camera.png": [], "chelsea.png": []}


@pytest.fixture(scope="module")
def vtc_index(tmp_path_factory):
    from xmr.cli import main

    root = tmp_path_factory.mktemp("vtc")
    photos = root / "photos"
    photos.mkdir()
    for n in COMMENTS:
        shutil.copy(SAMPLES / n, photos / n)
    (root / "side.jsonl").write_text("".join(json.dumps({"media": f"photos/{n}", "comments": c}) + "\n"
                                             for n, c in COMMENTS.items() if c))
    idx = root / "idx"
    assert main(["-q", "index", str(photos), "--index", str(idx), "--model", "tiny", "--manifest",
                 str(root / "side.jsonl")]) == 0
    (root / "captions.jsonl").write_text("".join(json.dumps({"media": f"photos/{n}", "captions": [
        f"a photo of a {n.split('.')[0]}", n]}) + "\n" for n in COMMENTS))
    assert main(["-q", "train-fusion", "--index", str(idx), "--captions", str(root / "captions.jsonl"), "--out",
                 str(root / "vtc"), "--fuser", "vtc", "--epochs", "3", "--val-fraction", "0", "--max-rows",
                 "3", "--config", '{"heads": 2, "layers": 1}']) == 0
    return root, idx


def _want(root, tiny_encoder, query: str, names: list[str]) -> np.ndarray:
    """q . normalize(v + r) from the manifest's comments, through xmr.heads.vtc's adapter with the trained weights."""
    from xmr.experts.fusers import load_fuser
    from xmr.heads.vtc import ContextAdapter, ContextAdapterConfig

    fuser = load_fuser(root / "vtc")
    c = fuser.config
    K = c.max_rows * len(c.experts)
    v = tiny_encoder.encode_images([root / "photos" / n for n in names])
    C = np.zeros((len(names), K, c.dim), np.float32)
    P = np.zeros((len(names), K), bool)
    for i, n in enumerate(names):
        rows = COMMENTS[n][:c.max_rows]
        if rows:
            C[i, :len(rows)] = tiny_encoder.encode_text(rows)
            P[i, :len(rows)] = True
    adapter = ContextAdapter(ContextAdapterConfig(dim=c.dim, layers=c.layers, heads=c.heads), fuser.adapter)
    return tiny_encoder.encode_text([query])[0] @ adapter.adapt(v, C, P).T


def test_search_scores_with_the_comment_adapter(vtc_index, capsys, tiny_encoder):
    root, idx = vtc_index
    code, out, err = run_cli(capsys, "search", "a horse in a field", "--index", str(idx), "--json", "-k", "5",
                             "--expert-fusion", f"vtc:{root / 'vtc'}")
    assert code == 0, err
    res = json.loads(out)["results"]
    names = [r["path"].rsplit("/", 1)[-1] for r in res]
    assert sorted(names) == sorted(COMMENTS)
    np.testing.assert_allclose([r["score"] for r in res], _want(root, tiny_encoder, "a horse in a field", names),
                               atol=1e-5)
    for r, n in zip(res, names):  # the comment that matched best is shown; items without comments: visual
        assert r["match"] in (("visual", "sidecar") if COMMENTS[n] else ("visual",))
        if COMMENTS[n]:
            assert r["experts"]["sidecar"]["field"] == "manifest:comments"
            assert r["experts"]["sidecar"]["text"] in COMMENTS[n]
    # the residual moved the scores: not the visual cosine alone
    v = tiny_encoder.encode_images([root / "photos" / n for n in names])
    assert not np.allclose([r["score"] for r in res], tiny_encoder.encode_text(["a horse in a field"])[0] @ v.T,
                           atol=1e-4)


def test_serve_scores_with_the_comment_adapter(vtc_index, tiny_encoder):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from xmr.retrieval import SearchOptions
    from xmr.serve import create_app

    root, idx = vtc_index
    app = create_app(idx, encoder=tiny_encoder, options=SearchOptions(expert_fusion=f"vtc:{root / 'vtc'}"))
    body = TestClient(app, base_url="http://127.0.0.1").get("/api/search", params={"q": "espresso", "k": 5}).json()
    names = [r["path"] for r in body["results"]]
    np.testing.assert_allclose([r["score"] for r in body["results"]], _want(root, tiny_encoder, "espresso", names),
                               atol=1e-5)
    assert all("weights" not in r for r in body["results"])  # the adapter has no per-source weights to show
