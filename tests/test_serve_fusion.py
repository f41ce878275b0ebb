"""`xmr serve` with a trained expert fuser (`--expert-fusion laff:DIR` / `mmt:DIR`, as in `xmr search`): scores are
the fuser's, each result says which source matched and the weights the fuser gave each source, the server's folder
stays private, a fuser that does not fit the index stops the server with the reason. FastAPI's TestClient on a
small `tiny` index with the sidecar expert (the serve tests' style)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="xmr serve needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx: pip install -e '.[serve,browser]'")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import SAMPLES, run_cli  # noqa: E402
from xmr.errors import ConfigError  # noqa: E402
from xmr.retrieval import SearchOptions  # noqa: E402
from xmr.serve import ServeSettings, create_app  # noqa: E402

LOCAL = "http://127.0.0.1"
NAMES = ("horse.png", "coffee.png", "rocket.jpg", "camera.png", "chelsea.png")


@pytest.fixture(scope="module")
def fused(tmp_path_factory, tiny_encoder):
    return build_fused(tmp_path_factory, tiny_encoder)


def build_fused(tmp_path_factory, tiny_encoder):
    """(index with the sidecar expert on 5 sample photos, 4 of them with a sidecar; a LAFF and an MMT fuser)."""
    from xmr.index import index_folder
    from xmr.train.fusion import FusionTrainConfig, train_from_index

    root = tmp_path_factory.mktemp("fusion-serve")
    d = root / "photos"
    d.mkdir()
    for n in NAMES:
        shutil.copy(SAMPLES / n, d / n)
        if n != "chelsea.png":  # one item without expert rows: its weights are over 'visual' alone
            (d / (n + ".txt")).write_text(f"side text about the {n.split('.')[0]}")
    idx = root / "idx"
    index_folder(d, idx, tiny_encoder, show_progress=False, experts=["sidecar"])
    caps = root / "captions.jsonl"
    caps.write_text("".join(json.dumps({"media": f"photos/{n}", "captions": [f"a {n.split('.')[0]}", n]}) + "\n"
                            for n in NAMES))
    fusers = {}
    for name in ("laff", "mmt"):
        fusers[name] = root / name
        train_from_index(idx, caps, FusionTrainConfig(fuser=name, epochs=2), fusers[name], val_fraction=0)
    return idx, fusers


def _client(idx, encoder, fusion: str, **options) -> TestClient:
    app = create_app(idx, encoder=encoder, options=SearchOptions(expert_fusion=fusion, **options),
                     settings=ServeSettings())
    return TestClient(app, base_url=LOCAL, raise_server_exceptions=False)


@pytest.mark.parametrize("name", ["laff", "mmt"])
def test_serve_scores_with_the_trained_fuser_and_shows_its_weights(fused, tiny_encoder, name):
    import torch

    from xmr.experts.fusers import load_fuser, scores_numpy
    from xmr.index.snapshot import open_reader
    from xmr.train.fusion import items_from_index

    idx, fusers = fused
    client = _client(idx, tiny_encoder, f"{name}:{fusers[name]}")
    body = client.get("/api/search", params={"q": "a horse", "k": 5}).json()
    res = body["results"]
    assert len(res) == 5
    stage = next(s for s in body["stages"] if s["stage"] == "experts")
    assert stage["fusion"] == name and stage["weights"] == "learned"  # the name, never the server's folder
    assert str(fusers[name]) not in json.dumps(body)
    # each score is the fuser's score of the item's tokens, recomputed here
    fuser = load_fuser(fusers[name])
    store, reader = open_reader(idx)
    try:
        ids = [r["id"] for r in res]
        tokens = items_from_index(reader, ids, ["sidecar"], fuser.config.max_rows)
    finally:
        store.close()
    q = tiny_encoder.encode_text(["a horse"])
    assert np.allclose([r["score"] for r in res], scores_numpy(fuser, q, tokens)[0], atol=1e-5)
    with torch.no_grad():
        Q, V = fuser.encode_queries(torch.from_numpy(q)), fuser.encode_items(tokens.torch())
        want_w = fuser.source_weights(Q, V)[0].numpy()
        share = fuser.contributions(Q, V)[0].numpy()
    for k, r in enumerate(res):
        has_side = r["path"] != "chelsea.png"
        assert set(r["weights"]) == ({"visual", "sidecar"} if has_side else {"visual"})
        assert sum(r["weights"].values()) == pytest.approx(1.0, abs=1e-3)
        assert r["weights"]["visual"] == pytest.approx(float(want_w[k, 0]), abs=1e-4)
        assert r["match"] == (("visual", "sidecar")[int(share[k].argmax())] if has_side else "visual")
        if has_side:
            assert r["experts"]["sidecar"]["text"].startswith("side text about the")
    # a quoted phrase keeps the fuser (loaded once, reused) and keeps only the item whose text holds it
    res = client.get("/api/search", params={"q": '"about the rocket" a photo'}).json()["results"]
    assert [r["path"] for r in res] == ["rocket.jpg"] and set(res[0]["weights"]) == {"visual", "sidecar"}


def test_serve_without_a_fuser_reports_no_weights(fused, tiny_encoder):
    idx, _ = fused
    client = _client(idx, tiny_encoder, "vista")
    res = client.get("/api/search", params={"q": "a horse", "k": 5}).json()["results"]
    assert all("weights" not in r for r in res)
    assert {r["path"]: r.get("match") in ("visual", "sidecar") for r in res} == {n: n != "chelsea.png" for n in NAMES}


def test_a_fuser_that_does_not_fit_stops_the_server(fused, tiny_encoder, tmp_path):
    from xmr.index import index_folder

    idx, fusers = fused
    with pytest.raises(ConfigError, match="holds a 'laff' fuser"):
        _client(idx, tiny_encoder, f"mmt:{fusers['laff']}")
    with pytest.raises(ConfigError, match="learned"):
        _client(idx, tiny_encoder, f"laff:{fusers['laff']}", expert_weights={"sidecar": 2.0})
    with pytest.raises(ConfigError, match="carries no ocr expert"):  # an expert the index lacks
        _client(idx, tiny_encoder, f"laff:{fusers['laff']}", experts=("ocr",))
    plain = tmp_path / "plain"  # an index without experts
    index_folder(SAMPLES, plain, tiny_encoder, show_progress=False)
    with pytest.raises(ConfigError, match="carries none"):
        _client(plain, tiny_encoder, f"laff:{fusers['laff']}")


def test_serve_cli_refuses_a_bad_fusion_before_serving(fused, tmp_path, capsys):
    idx, fusers = fused
    for argv, why in ((["--expert-fusion", f"mmt:{fusers['laff']}"], "holds a 'laff' fuser"),
                      (["--expert-fusion", "mean"], "trained fuser laff:DIR"),
                      (["--experts", "none", "--expert-fusion", f"laff:{fusers['laff']}"], "drop --experts none"),
                      (["--expert-weight", "sidecar"], "NAME=NUMBER")):
        code, _, err = run_cli(capsys, "serve", "--index", str(idx), "--port", "1", *argv)
        assert code == 2 and why in err, (argv, err)
        assert len(err.strip().splitlines()) == 1
