"""The hierarchical recipe tower from the user's commands: ``xmr side-text recipe1m:DIR`` writes the recipes as a
manifest, ``xmr index --manifest`` stores each photo's title / ingredients / instructions as rows (one per
ingredient and step), ``xmr train-recipe`` trains the tower on the index's own (photo, recipe) pairs, and
``xmr search --recipe-tower DIR`` runs image -> recipe and text (as a recipe title) -> image, scores recomputed
here from the recipes with :mod:`xmr.heads.recipe`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES, SAMPLES, run_cli


@pytest.fixture(scope="module")
def recipe_world(tmp_path_factory):
    """The Recipe1M fixture (3 recipes with photos) with a coloured photo written for each, one extra photo without
    a recipe; indexed with tiny + the manifest; a tower trained on it."""
    from xmr.cli import main

    root = tmp_path_factory.mktemp("recipes")
    data = root / "recipe1m"
    shutil.copytree(FIXTURES / "side_text" / "recipe1m", data)
    assert main(["-q", "side-text", f"recipe1m:{data}", "--out", str(root / "side.jsonl")]) == 0
    lines = [json.loads(x) for x in (root / "side.jsonl").read_text().splitlines()]
    rng = np.random.default_rng(0)
    for n, line in enumerate(lines):  # a distinct picture per dish
        Path(line["media"]).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(line["media"])
    shutil.copy(SAMPLES / "chelsea.png", data / "chelsea.png")  # a photo without a recipe
    idx = root / "idx"
    assert main(["-q", "index", str(data), "--index", str(idx), "--model", "tiny", "--manifest",
                 str(root / "side.jsonl")]) == 0
    assert main(["-q", "train-recipe", "--index", str(idx), "--out", str(root / "tower"), "--epochs", "40",
                 "--dim", "32", "--val-fraction", "0"]) == 0
    return root, idx, lines


def test_manifest_recipes_are_rows_per_ingredient_and_step(recipe_world):
    from xmr.index.snapshot import open_reader
    from xmr.retrieval.stages.recipe import index_recipes

    root, idx, lines = recipe_world
    assert [len(x["ingredients"]) for x in lines] == [3, 4, 3]
    store, reader = open_reader(idx)
    try:
        ids, batch, titles = index_recipes(reader)
        paths = {i: r.path for i, r in reader.get_items(list(ids)).items()}
    finally:
        store.close()
    assert sorted(titles) == sorted(x["title"] for x in lines)  # the photo without a recipe is not among them
    for k, i in enumerate(ids):
        line = next(x for x in lines if x["media"] == paths[int(i)])
        assert batch.mask["ingredients"][k].sum() == len(line["ingredients"])  # one row per ingredient
        assert batch.mask["instructions"][k].sum() == len(line["instructions"])


def _tower_inputs(root, lines, tiny_encoder):
    from xmr.heads.recipe import RecipeTower, encode_recipes

    tower = RecipeTower.load(root / "tower")
    R = tower.encode_recipes(encode_recipes(tiny_encoder, lines))  # the recipes' joint vectors, from the manifest
    return tower, R


def test_image_query_finds_its_recipe(recipe_world, capsys, tiny_encoder):
    root, idx, lines = recipe_world
    tower, R = _tower_inputs(root, lines, tiny_encoder)
    for n, line in enumerate(lines):
        code, out, err = run_cli(capsys, "search", "--image", line["media"], "--index", str(idx), "--json",
                                 "--recipe-tower", str(root / "tower"))
        assert code == 0, err
        res = json.loads(out)["results"]
        assert len(res) == 3 and all(r["match"] == "recipe" for r in res)  # only photos with a recipe
        want = R @ tower.encode_images(tiny_encoder.encode_images([line["media"]]))[0]
        got = {r["path"]: r["score"] for r in res}
        assert np.allclose([got[x["media"]] for x in lines], want, atol=1e-5)
        # trained on these pairs: each photo's own recipe comes first, its title shown
        assert res[0]["path"] == line["media"] and res[0]["experts"]["recipe"]["text"] == line["title"]


def test_text_query_as_a_recipe_title_finds_photos(recipe_world, capsys, tiny_encoder):
    from xmr.heads.recipe import RecipeBatch

    root, idx, lines = recipe_world
    tower, _ = _tower_inputs(root, lines, tiny_encoder)
    code, out, err = run_cli(capsys, "search", "Lemon Cake", "--index", str(idx), "--json", "--recipe-tower",
                             str(root / "tower"))
    assert code == 0, err
    res = json.loads(out)["results"]
    assert len(res) == 4  # every photo, the one without a recipe too
    q = tiny_encoder.encode_text(["Lemon Cake"])
    z = np.zeros((1, 1, q.shape[1]), np.float32)
    r = tower.encode_recipes(RecipeBatch({"title": q[:, None], "ingredients": z, "instructions": z},
                                         {"title": np.ones((1, 1), bool), "ingredients": np.zeros((1, 1), bool),
                                          "instructions": np.zeros((1, 1), bool)}, np.zeros_like(q)))[0]
    want = tower.encode_images(tiny_encoder.encode_images([x["path"] for x in res])) @ r
    assert np.allclose([x["score"] for x in res], want, atol=1e-5)


def test_recipe_tower_refusals(recipe_world, capsys, tmp_path):
    root, idx, lines = recipe_world
    tower = str(root / "tower")
    for argv, why in ((["a cake", "--experts", "sidecar"], "drop --experts"),
                      (["a cake", "--expert-fusion", "max"], "drop --expert-fusion"),
                      (["a cake", "--not", "cream"], "one text query"),
                      (["a cake", "--type", "moment"], "does not rank moments")):
        code, _, err = run_cli(capsys, "search", *argv, "--index", str(idx), "--recipe-tower", tower)
        assert code == 2 and why in err, (argv, err)
    plain = tmp_path / "plain"  # an index without recipes: an image query has nothing to match
    code, _, err = run_cli(capsys, "-q", "index", str(SAMPLES), "--index", str(plain), "--model", "tiny")
    assert code == 0, err
    code, _, err = run_cli(capsys, "search", "--image", str(SAMPLES / "chelsea.png"), "--index", str(plain),
                           "--recipe-tower", tower)
    assert code == 2 and "holds no recipes" in err
    code, _, err = run_cli(capsys, "train-recipe", "--index", str(plain), "--out", str(tmp_path / "t"))
    assert code == 2 and "with a recipe" in err


def test_serve_with_the_recipe_tower(recipe_world, tiny_encoder):
    pytest.importorskip("fastapi", reason="xmr serve needs the serve extra")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from xmr.retrieval import SearchOptions
    from xmr.serve import create_app

    root, idx, lines = recipe_world
    app = create_app(idx, encoder=tiny_encoder, options=SearchOptions(recipe_tower=str(root / "tower")))
    client = TestClient(app, base_url="http://127.0.0.1")
    photo = lines[1]["media"]
    with open(photo, "rb") as f:  # an uploaded dish photo finds its recipe's photo, the title shown
        body = client.post("/api/search/image", files={"file": ("dish.png", f, "image/png")}).json()
    first = body["results"][0]
    assert first["path"].endswith(Path(photo).name) and first["experts"]["recipe"]["text"] == lines[1]["title"]
    stage = next(s for s in body["stages"] if s["stage"] == "recipe")
    assert str(root) not in json.dumps(body["stages"]) and stage["tower"] == "the server's recipe tower"
    assert len(client.get("/api/search", params={"q": "Green Salad"}).json()["results"]) == 4
