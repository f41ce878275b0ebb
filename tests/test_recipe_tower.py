"""Hierarchical recipe tower (Salvador et al. 2021) and the Recipe1M medR / R@K protocol."""
import numpy as np
import pytest

from xmr.errors import ConfigError


def test_recipe_protocol_hand_case():
    from xmr.eval.recipe_protocol import recipe_protocol

    img = np.eye(4, dtype=np.float32)
    rec = np.eye(4, dtype=np.float32)[[0, 1, 3, 2]]  # pairs 2 and 3 swapped
    m = recipe_protocol(img, rec, size=4, bags=1)
    # image 0, 1 rank their recipe first; images 2, 3 rank theirs second (score 0 tied with one other 0: counted
    # against it -> ranks 1, 1, 4, 4)
    assert m["im2recipe"] == {"medR": 2.5, "R@1": 0.5, "R@5": 1.0, "R@10": 1.0}
    assert m["recipe2im"] == m["im2recipe"]
    assert recipe_protocol(img, img, size=4, bags=3)["im2recipe"]["R@1"] == 1.0
    with pytest.raises(ConfigError, match="at least 1000"):
        recipe_protocol(img, img, size=1000)


def _world(n, seed=0):
    rng = np.random.default_rng(seed)
    words = ["tomato", "basil", "rice", "egg", "lemon", "beef", "tofu", "corn"]
    protos = rng.normal(size=(len(words), 16))
    recipes, images = [], []
    for _ in range(n):
        ing = rng.choice(len(words), 3, replace=False)
        recipes.append({"title": f"{words[ing[0]]} dish", "ingredients": [words[i] for i in ing],
                        "instructions": [f"cook the {words[i]}" for i in ing]})
        x = protos[ing].sum(0)
        images.append(x / np.linalg.norm(x))
    return recipes, np.asarray(images, np.float32)


class BowEncoder:
    """A deterministic bag-of-words sentence encoder (hashing) standing in for a text tower."""

    def encode_text(self, texts, show_progress=False):
        import zlib

        out = np.zeros((len(texts), 32), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace(".", " ").replace(";", " ").split():
                out[i, zlib.crc32(w.encode()) % 32] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


def test_encode_recipes_pads_fields_and_dedups():
    from xmr.heads.recipe import encode_recipes

    rec = [{"title": "a", "ingredients": ["x", "y", "z"], "instructions": ["go"]},
           {"title": "b", "ingredients": [], "instructions": ["go", "stop"]}]
    b = encode_recipes(BowEncoder(), rec, max_items=2)
    assert b.x["ingredients"].shape == (2, 2, 32) and b.mask["ingredients"].tolist() == [[True, True], [False, False]]
    assert b.mask["instructions"].tolist() == [[True, False], [True, True]]
    np.testing.assert_allclose(b.x["instructions"][0, 0], b.x["instructions"][1, 0])
    with pytest.raises(ConfigError, match="needs 'title'"):
        encode_recipes(BowEncoder(), [{"title": "a"}])


def test_tower_learns_and_round_trips(tmp_path):
    from xmr.eval.recipe_protocol import recipe_protocol
    from xmr.heads.recipe import RecipeTower, RecipeTowerConfig, encode_recipes, train_recipe_tower

    rec, img = _world(160)
    b = encode_recipes(BowEncoder(), rec)
    cfg = RecipeTowerConfig(text_dim=32, image_dim=16, dim=32, heads=2)
    tr, te = np.arange(120), np.arange(120, 160)
    tower = train_recipe_tower(b.take(tr), img[tr], cfg, epochs=15, batch_size=32, seed=0)
    assert tower.info["loss_last"] < tower.info["loss_first"]
    m = recipe_protocol(tower.encode_images(img[te]), tower.encode_recipes(b.take(te)), size=40, bags=1)
    assert m["im2recipe"]["R@10"] > 0.5  # chance is 0.25
    tower.save(tmp_path / "t")
    again = RecipeTower.load(tmp_path / "t")
    np.testing.assert_allclose(again.encode_recipes(b.take(te)), tower.encode_recipes(b.take(te)), atol=1e-5)
    with pytest.raises(ConfigError, match="mode"):
        RecipeTowerConfig(text_dim=32, image_dim=16, mode="deep")
