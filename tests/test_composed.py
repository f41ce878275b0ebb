"""Composed queries (docs/composed.md): the composers (TIRG, JVSM), their save / load and compatibility checks, the
composed datasets (synth edits, Fashion200k, FashionIQ fixtures), the protocols' ranks and recalls, training,
and the query path (Query(composer=...), xmr search / eval / train-compose, bad input)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import FIXTURES, SAMPLES, run_cli
from xmr.compose import (check_compatible, compose_numpy, create_composer, load_composer, save_composer)
from xmr.data.composed import load_composed, tirg_modification
from xmr.errors import ConfigError, ModelUnavailableError
from xmr.eval.composed import compose_queries, composed_metrics, composed_ranks
from xmr.registries import COMPOSED_DATASETS, COMPOSERS, load_all

F200K = FIXTURES / "composed" / "fashion200k"
FIQ = FIXTURES / "composed" / "fashioniq"


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ------------------------------------------------------------------------------------------------ composers


@pytest.mark.parametrize("name", sorted(e.name for e in load_all("composer")["composer"]))
def test_composer_contract(name, tmp_path):
    """Every registered composer: (B, d) -> (B, d) finite unit vectors, inputs untouched, save / load identical."""
    c = create_composer(name, dim=8, hidden=16, seed=3)
    rng = np.random.default_rng(0)
    a, b = _unit(rng.normal(size=(5, 8))).astype(np.float32), _unit(rng.normal(size=(5, 8))).astype(np.float32)
    a0, b0 = a.copy(), b.copy()
    out = compose_numpy(c, a, b)
    assert out.shape == (5, 8) and np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)
    save_composer(c, tmp_path / name, {"note": "test"})
    cfg = json.loads((tmp_path / name / "config.json").read_text())
    assert cfg["model"] == "xmr-composer" and cfg["composer"] == name and cfg["dim"] == 8
    again = load_composer(tmp_path / name)
    np.testing.assert_allclose(compose_numpy(again, a, b), out, atol=1e-6)
    with pytest.raises(ConfigError, match="expected image and text embeddings"):
        compose_numpy(c, a[:, :4], b[:, :4])


def test_tirg_is_the_papers_gated_residual():
    """phi = w_g * sigmoid(gate([x, t])) * x + w_r * res([x, t]): with w_r = 0 and a saturated gate the query is the
    reference itself; with w_g = 0 it is the residual branch alone."""
    c = create_composer("tirg", dim=4, hidden=8)
    c.eval()
    x = torch.tensor([[0.6, 0.8, 0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    with torch.no_grad():
        c.compose.w.copy_(torch.tensor([2.0, 0.0]))
        last = c.compose.gate[-1]
        last.weight.zero_()
        last.bias.fill_(30.0)  # sigmoid(30) = 1 to float precision
        np.testing.assert_allclose(c(x, t).numpy(), x.numpy(), atol=1e-6)
        c.compose.w.copy_(torch.tensor([0.0, 1.0]))
        res = c.compose.res(torch.cat([x, t], -1))
        np.testing.assert_allclose(c(x, t).numpy(), torch.nn.functional.normalize(res, dim=-1).numpy(), atol=1e-6)


def test_jvsm_scales_text_references_separately():
    c = create_composer("jvsm", dim=4, hidden=8)
    c.eval()
    x, t = torch.eye(4)[:1], torch.eye(4)[1:2]
    with torch.no_grad():
        assert torch.allclose(c(x, t), c(x, t, reference_is_text=True))  # equal scales at init
        c.ref_scale[1].fill_(0.0)
        assert not torch.allclose(c(x, t), c(x, t, reference_is_text=True))


def test_composer_compatibility_and_bad_folders(tmp_path):
    c = create_composer("tirg", dim=8, hidden=16, encoder="tiny")
    check_compatible(c, 8, "tiny")
    with pytest.raises(ConfigError, match="8-d embeddings.*gives 16-d"):
        check_compatible(c, 16, "tiny")
    with pytest.raises(ConfigError, match="trained on encoder 'tiny'"):
        check_compatible(c, 8, "concept")
    with pytest.raises(ModelUnavailableError, match="directory not found"):
        load_composer(tmp_path / "nope")
    save_composer(c, tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text(json.dumps({"model": "xmr-adapter"}))
    with pytest.raises(ConfigError, match="not a composer"):
        load_composer(tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    save_composer(c, tmp_path / "e")
    for bad, message in (({"hidden": 16384, "dim": 16384}, "over the"), ({"dim": "8"}, "dim"),
                         ({"dim": 10**9}, "dim"), ({"surprise": 1}, "does not know")):
        good = json.loads((tmp_path / "e" / "config.json").read_text())
        (tmp_path / "e" / "config.json").write_text(json.dumps({**good, **bad}))
        with pytest.raises(ConfigError, match=message):
            load_composer(tmp_path / "e")
        (tmp_path / "e" / "config.json").write_text(json.dumps(good))
    save_composer(c, tmp_path / "d")
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    (tmp_path / "d" / "config.json").write_text(json.dumps({**cfg, "dim": 9}))
    with pytest.raises(ModelUnavailableError, match="does not fit"):
        load_composer(tmp_path / "d")


def test_tirg_learns_a_composition_it_was_not_shown():
    """A world where the target is the reference with one coordinate block replaced by the text's: trained on some
    (reference, text) combinations, TIRG finds targets of unseen combinations far better than the image alone."""
    from xmr.train.compose import composer_loss

    rng = np.random.default_rng(0)
    d = 12
    colours = _unit(rng.normal(size=(4, 6)))
    shapes = _unit(rng.normal(size=(4, 6)))

    def item(c, s):
        return np.concatenate([colours[c], shapes[s]]) / np.sqrt(2)

    texts = {c: np.concatenate([colours[c], np.zeros(6)]) for c in range(4)}  # "make it <colour c>"
    pairs = [(c, s) for c in range(4) for s in range(4)]
    held = {(0, 0), (1, 1), (2, 2), (3, 3)}
    train = [(r, c) for r in pairs for c in range(4) if (c, r[1]) not in held and c != r[0]]
    test = [(r, c) for r in pairs for c in range(4) if (c, r[1]) in held and c != r[0]]
    comp = create_composer("tirg", dim=d, hidden=32, seed=0)
    opt = torch.optim.Adam(comp.parameters(), lr=3e-3)
    g = torch.tensor(np.stack([item(*p) for p in pairs]), dtype=torch.float32)
    for step in range(150):
        b = [train[i] for i in rng.choice(len(train), 16, replace=False)]
        ref = torch.tensor(np.stack([item(*r) for r, _ in b]), dtype=torch.float32)
        txt = torch.tensor(np.stack([texts[c] for _, c in b]), dtype=torch.float32)
        tgt = torch.tensor(np.stack([item(c, r[1]) for r, c in b]), dtype=torch.float32)
        same = torch.tensor([[(c1, r1[1]) == (c2, r2[1]) for r2, c2 in b] for r1, c1 in b])
        loss, _ = composer_loss(comp, ref, txt, tgt, same)
        opt.zero_grad()
        loss.backward()
        opt.step()
    refs = np.stack([item(*r) for r, _ in test]).astype(np.float32)
    txts = np.stack([texts[c] for _, c in test]).astype(np.float32)
    targets = [[pairs.index((c, r[1]))] for r, c in test]
    gallery = g.numpy()
    r1 = {}
    for m in ("image", "composer"):
        q = compose_queries(m, refs, txts, comp)
        ranks = composed_ranks(q @ gallery.T, targets, [pairs.index(r) for r, _ in test])
        r1[m] = float((ranks == 1).mean())
    assert r1["composer"] >= 0.8 and r1["composer"] > r1["image"] + 0.5, r1


# ------------------------------------------------------------------------------------------------ protocols


def test_composed_ranks_hand_computed():
    sims = np.array([[0.9, 0.5, 0.7, 0.1],
                     [0.2, 0.2, 0.2, 0.9],
                     [0.3, 0.8, 0.8, 0.0]])
    # q0: the reference (0) is taken out; target 2 (0.7) is first of the rest -> rank 1
    # q1: targets {0, 1} tie at 0.2 with item 2 (0.2, pessimistic) and behind 3 (0.9) -> rank 3
    # q2: target 2 ties with item 1 -> rank 2 (pessimistic); without the tie rule it would be 1
    ranks = composed_ranks(sims, [[2], [0, 1], [2]], [0, None, None])
    assert ranks.tolist() == [1, 3, 2]
    assert composed_metrics("fashion200k", ranks) == {"R@1": 33.33, "R@10": 100.0, "R@50": 100.0, "queries": 3}
    # groups: q0 ranked among items of group "a" only (items 0, 1): target 1 beats 0
    ranks = composed_ranks(sims, [[1], [3], [2]], None, ["a", "b", "b"], ["a", "a", "b", "b"])
    assert ranks.tolist() == [2, 1, 1]
    with pytest.raises(ConfigError, match="none of its targets"):
        composed_ranks(sims, [[0], [3], [2]], [0, None, None])


def test_fashioniq_metrics_are_per_category_then_mean():
    ranks = np.array([5, 60, 20, 1])
    m = composed_metrics("fashioniq", ranks, ["dress", "dress", "shirt", "shirt"])
    assert m["dress/R@10"] == 50.0 and m["dress/R@50"] == 50.0
    assert m["shirt/R@10"] == 50.0 and m["shirt/R@50"] == 100.0
    assert m["R@10"] == 50.0 and m["R@50"] == 75.0 and m["mean"] == 62.5


# ------------------------------------------------------------------------------------------------ datasets


def test_composed_dataset_registry_lists_the_schemes():
    assert {"edits", "fashion200k", "fashioniq"} <= set(COMPOSED_DATASETS.names())
    assert {"tirg", "jvsm"} <= set(COMPOSERS.names())


def test_fashion200k_loader_follows_tirg():
    ds = load_composed(f"fashion200k:{F200K}:test")
    assert len(ds) == 6 and ds.exclude_reference and ds.scheme == "fashion200k"
    q0, q1 = ds.queries
    assert q0.text == "replace blue with red" and q1.text == "replace blue with white"
    # every test image whose description is the target's counts (two "red floral dress" images)
    assert sorted(ds.descriptions[t] for t in q0.targets) == ["red floral dress", "red floral dress"]
    assert "black lace dressdotmark" in ds.descriptions  # TIRG's caption clean-up
    assert tirg_modification("a b c", "a b c") == "replace c with c"
    train = load_composed(f"fashion200k:{F200K}:train", seed=0)
    assert train.queries and all(train.descriptions[q.reference] != train.descriptions[q.target]
                                 for q in train.queries)


def test_fashioniq_loader_joins_captions_and_groups_categories():
    ds = load_composed(f"fashioniq:{FIQ}:val")
    assert not ds.exclude_reference and ds.descriptions is None
    assert [q.text for q in ds.queries] == ["is shorter and is red and sleeveless", "has flowers and is longer",
                                            "is darker and has a logo"]
    assert [q.group for q in ds.queries] == ["dress", "dress", "shirt"]
    assert ds.groups == ["dress"] * 3 + ["shirt"] * 2
    only = load_composed(f"fashioniq:{FIQ}:val?categories=shirt")
    assert len(only) == 2 and len(only.queries) == 1


def test_composed_dataset_errors(tmp_path):
    with pytest.raises(ConfigError, match="name a split"):
        load_composed(f"fashioniq:{FIQ}")
    with pytest.raises(ConfigError, match="unknown composed dataset scheme"):
        load_composed(f"coco:{FIQ}:val")
    with pytest.raises(ConfigError, match="test_queries.txt is missing"):
        (tmp_path / "labels").mkdir()
        (tmp_path / "labels" / "dress_test_detect_all.txt").write_text("a.jpg\t1\tred dress\n")
        load_composed(f"fashion200k:{tmp_path}:test")
    with pytest.raises(ConfigError, match="do not exist"):
        (tmp_path / "test_queries.txt").write_text("a.jpg a.jpg\n")
        load_composed(f"fashion200k:{tmp_path}:test")


def test_synth_edits_hold_out_attribute_pairs(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "synth", "edits", "--out", str(tmp_path / "e"), "--n", "120", "--size", "32",
                           "--test-queries", "40")
    assert code == 0 and "held out" in out
    info = json.loads((tmp_path / "e" / "synth.json").read_text())
    held = set(info["held_out"])
    images = {r["id"]: r for r in map(json.loads, (tmp_path / "e" / "images.jsonl").read_text().splitlines())}
    edits = [json.loads(x) for x in (tmp_path / "e" / "edits.jsonl").read_text().splitlines()]
    assert not any(f"{r['colour']} {r['shape']}" in held for r in images.values() if r["split"] == "train")
    keys = ("colour", "shape", "size", "region")
    for e in edits:
        ref, tgt = images[e["reference"]], images[e["target"]]
        changed = [k for k in keys if ref[k] != tgt[k]]
        assert changed == [e["attribute"]]
        if e["attribute"] in ("colour", "region"):
            assert tgt[e["attribute"]] in e["text"]
        assert all(all(images[t][k] == tgt[k] for k in keys) for t in e["targets"])
        assert (f"{tgt['colour']} {tgt['shape']}" in held) == (e["split"] == "test")
    ds = load_composed(f"edits:{tmp_path / 'e'}:test")
    assert len(ds.queries) == sum(e["split"] == "test" for e in edits) > 0


# ------------------------------------------------------------------------------------------------ training and use


@pytest.fixture(scope="module")
def edits_dir(tmp_path_factory):
    from xmr.synth.edits import generate_edits

    d = tmp_path_factory.mktemp("edits") / "set"
    generate_edits(d, n=60, size=24, test_queries=20)
    return d


@pytest.mark.parametrize("name", ["tirg", "jvsm"])
def test_train_compose_writes_a_loadable_composer(name, edits_dir, tmp_path, capsys, tiny_encoder):
    out = tmp_path / name
    code, stdout, _ = run_cli(capsys, "train-compose", "--dataset", f"edits:{edits_dir}", "--composer", name,
                              "--model", "tiny", "--out", str(out), "--epochs", "3", "--batch-size", "16",
                              "--hidden", "32")
    assert code == 0, stdout
    assert "baselines: image" in stdout and f"--composer {out}" in stdout
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and rows[0].startswith("epoch,steps")
    assert (out / "curve.png").stat().st_size > 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["composer"] == name and cfg["encoder"] == "tiny" and cfg["training"]["epochs_done"] == 3
    assert set(cfg["training"]["baselines"]) == {"image", "text", "fusion"}
    c = load_composer(out)
    assert c.config.dim == tiny_encoder.dim
    # a second run into the same folder is refused, nothing overwritten
    code, _, err = run_cli(capsys, "train-compose", "--dataset", f"edits:{edits_dir}", "--model", "tiny", "--out",
                           str(out), "--epochs", "1")
    assert code == 2 and "pass --resume" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("keep")
    code, _, err = run_cli(capsys, "train-compose", "--dataset", f"edits:{edits_dir}", "--model", "tiny", "--out",
                           str(tmp_path / "other"), "--epochs", "1")
    assert code == 2 and "not a training run" in err and (tmp_path / "other" / "x.txt").read_text() == "keep"


def test_train_compose_resume(edits_dir, tmp_path, capsys):
    """--resume continues a run from its checkpoint: 2 + 1 epochs give the same composer and metrics as 3 epochs
    in one go; other settings or fewer epochs are refused with nothing written."""
    base = ("train-compose", "--dataset", f"edits:{edits_dir}", "--model", "tiny", "--batch-size", "16",
            "--hidden", "16")
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_cli(capsys, *base, "--out", str(full), "--epochs", "3")[0] == 0
    assert run_cli(capsys, *base, "--out", str(part), "--epochs", "2")[0] == 0
    code, stdout, err = run_cli(capsys, *base, "--out", str(part), "--epochs", "3", "--resume")
    assert code == 0, err
    assert "resumed after epoch 2" in stdout
    assert (part / "metrics.csv").read_text().count("\n") == 1 + 4
    a, b = load_composer(full), load_composer(part)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)

    def rows(p):  # every column but the epoch's wall time
        import csv
        with open(p / "metrics.csv") as f:
            return [{k: v for k, v in r.items() if k != "train_s"} for r in csv.DictReader(f)]
    assert rows(full) == rows(part) and "R@10" in rows(part)[-1]
    before = (part / "metrics.csv").read_text()
    code, _, err = run_cli(capsys, *base[:-1], "32", "--out", str(part), "--epochs", "4", "--resume")
    assert code == 2 and "hidden differ" in err
    code, _, err = run_cli(capsys, *base, "--out", str(part), "--epochs", "2", "--resume")
    assert code == 2 and "would go back" in err
    code, _, err = run_cli(capsys, *base, "--out", str(tmp_path / "new"), "--epochs", "2", "--resume")
    assert code == 2 and "no checkpoint to resume" in err and not (tmp_path / "new").exists()
    assert (part / "metrics.csv").read_text() == before


def test_tirg_trains_on_fashion200k_pairs(tmp_path, tiny_encoder):
    from xmr.train.compose import ComposeTrainConfig, train_composer

    cfg = ComposeTrainConfig(dataset=f"fashion200k:{F200K}", composer="tirg", model="tiny", epochs=2, batch_size=4,
                             hidden=8)
    res = train_composer(cfg, tmp_path / "f", encoder=tiny_encoder)
    assert [r["epoch"] for r in res.history] == [0, 1, 2]
    assert set(res.history[-1]) >= {"R@1", "R@10", "R@50", "train_loss"}
    assert res.baselines["image"]["queries"] == 2


def test_jvsm_refuses_a_dataset_without_descriptions(tmp_path, tiny_encoder):
    from xmr.train.compose import ComposeTrainConfig, train_composer

    cfg = ComposeTrainConfig(dataset=f"fashioniq:{FIQ}", composer="jvsm", model="tiny", split="val",
                             eval_split=None, epochs=1, batch_size=2)
    with pytest.raises(ConfigError, match="has none"):
        train_composer(cfg, tmp_path / "j", encoder=tiny_encoder)
    assert not (tmp_path / "j").exists()


@pytest.fixture(scope="module")
def composed_index(tmp_path_factory, tiny_encoder):
    """The bundled samples indexed with `tiny`, and an (untrained) TIRG composer saved for that model."""
    import shutil

    from xmr.index import index_folder

    root = tmp_path_factory.mktemp("composed_index")
    photos = root / "photos"
    shutil.copytree(SAMPLES, photos, ignore=shutil.ignore_patterns("*.json", "*.md"))
    index_folder(photos, root / "idx", tiny_encoder, show_progress=False)
    save_composer(create_composer("tirg", dim=tiny_encoder.dim, hidden=16, encoder="tiny"), root / "tirg")
    save_composer(create_composer("tirg", dim=tiny_encoder.dim + 1, hidden=16), root / "wide")
    save_composer(create_composer("tirg", dim=tiny_encoder.dim, hidden=16, encoder="concept"), root / "other")
    return root


def test_query_with_a_composer_is_the_composers_vector(composed_index, tiny_encoder):
    from xmr.retrieval import Query, encode_query

    q = Query.composed(SAMPLES / "chelsea.png", ["in red", "at night"], composer=str(composed_index / "tirg"))
    emb = encode_query(tiny_encoder, q)
    img = tiny_encoder.encode_images([SAMPLES / "chelsea.png"], show_progress=False)
    txt = tiny_encoder.encode_text(["in red and at night"])
    expect = compose_numpy(load_composer(composed_index / "tirg"), img, txt)[0]
    np.testing.assert_allclose(emb.fused, expect, atol=1e-5)
    assert q.describe()["composer"] == str(composed_index / "tirg")
    fusion = encode_query(tiny_encoder, Query.composed(SAMPLES / "chelsea.png", ["in red", "at night"]))
    assert not np.allclose(fusion.fused / np.linalg.norm(fusion.fused), expect, atol=1e-3)
    with pytest.raises(ConfigError, match="empty modification text"):
        Query.composed(SAMPLES / "chelsea.png", ["  "], composer=str(composed_index / "tirg"))
    with pytest.raises(ConfigError, match="composes one image with modification text"):
        Query.composed(SAMPLES / "chelsea.png", ["red"], negatives=["blue"], composer=str(composed_index / "tirg"))


def test_search_with_a_composer_and_bad_input(composed_index, tmp_path, capsys):
    idx = str(composed_index / "idx")
    img = str(SAMPLES / "chelsea.png")
    code, out, err = run_cli(capsys, "search", "--index", idx, "--image", img, "in red", "--composer",
                             str(composed_index / "tirg"), "--json", "-k", "3")
    assert code == 0, err
    d = json.loads(out)
    assert d["query"]["composer"] == str(composed_index / "tirg") and len(d["results"]) == 3
    before = (composed_index / "idx" / "meta.sqlite").read_bytes()
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    cases = [
        (["--image", str(bad), "in red", "--composer", str(composed_index / "tirg")], "broken.jpg"),
        (["--image", img, "", "--composer", str(composed_index / "tirg")], "empty modification text"),
        (["--image", img, "in red", "--composer", str(composed_index / "wide")], "gives 64-d|-d vectors"),
        (["--image", img, "in red", "--composer", str(composed_index / "other")], "trained on encoder 'concept'"),
        (["--image", img, "--composer", str(composed_index / "tirg")], "--composer composes an image with text"),
        (["--image", img, "in red", "--composer", str(tmp_path / "none")], "no such folder"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(capsys, "search", "--index", idx, *argv)
        assert code == 2 and err.count("\n") == 1, (argv, err)
        assert any(m in err for m in message.split("|")), (argv, err)
    assert (composed_index / "idx" / "meta.sqlite").read_bytes() == before


def test_composed_search_drops_the_reference(composed_index, tmp_path, capsys):
    """The indexed reference image (by path, and a copy by content) is left out of a composed search's results,
    the next items move up; --keep-reference keeps it; an image-only search keeps it too."""
    import shutil

    idx = str(composed_index / "idx")
    img = composed_index / "photos" / "chelsea.png"

    def ids(*argv):
        code, out, err = run_cli(capsys, "search", "--index", idx, *argv, "--json", "-k", "4")
        assert code == 0, err
        return [(r["path"], r["id"]) for r in json.loads(out)["results"]]

    tirg = ("--composer", str(composed_index / "tirg"))
    kept = ids("--image", str(img), "in red", *tirg, "--keep-reference")
    dropped = ids("--image", str(img), "in red", *tirg)
    ref = [i for p, i in kept if p.endswith("chelsea.png")]
    assert ref, "an untrained TIRG keeps the reference near the top: the case to test"
    assert len(dropped) == 4 and ref[0] not in [i for _, i in dropped]
    assert [x for x in kept if x[1] != ref[0]] == dropped[:3]  # the others keep their order, one more comes up
    copy = tmp_path / "elsewhere.png"
    shutil.copy(img, copy)  # the same file outside the index: matched by content
    assert ref[0] not in [i for _, i in ids("--image", str(copy), "in red", *tirg)]
    assert ref[0] not in [i for _, i in ids("--image", str(img), "in red")]  # training-free fusion: same rule
    assert ref[0] in [i for _, i in ids("--image", str(img))]  # not composed: an image search finds itself
    code, _, err = run_cli(capsys, "search", "--index", idx, "--image", str(img), "--keep-reference")
    assert code == 2 and "composed queries" in err


def test_eval_reexports_the_composed_functions():
    import xmr.eval as ev

    for name in ("compose_queries", "composed_ranks", "composed_metrics", "evaluate_composed",
                 "evaluate_composed_embeddings"):
        assert getattr(ev, name) is getattr(__import__("xmr.eval.composed", fromlist=[name]), name)
        assert name in ev.__all__


def test_eval_on_a_composed_dataset(edits_dir, tmp_path, capsys, tiny_encoder):
    out = tmp_path / "c"
    save_composer(create_composer("tirg", dim=tiny_encoder.dim, hidden=16, encoder="tiny"), out)
    code, stdout, err = run_cli(capsys, "eval", "--dataset", f"edits:{edits_dir}:test", "--model", "tiny",
                                "--composer", str(out), "--method", "all", "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert [r["method"] for r in res] == ["image", "text", "fusion", "composer"]
    assert all(0 <= r["R@1"] <= r["R@10"] <= r["R@50"] <= 100 for r in res)
    code, _, err = run_cli(capsys, "eval", "--dataset", f"edits:{edits_dir}:test", "--model", "concept",
                           "--composer", str(out))
    assert code == 2 and "works on 64-d embeddings of 'tiny'" in err
