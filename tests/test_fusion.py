"""Trained expert fusers (xmr.experts.fusers: laff, mmt, concat): item tokens, hand-checked LAFF / MMT behaviour,
training on the synthetic multi-expert world, save / load, and the experts stage using a fuser from xmr
train-fusion (``--expert-fusion laff:DIR``)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import SAMPLES, run_cli

from xmr.errors import ConfigError, ModelUnavailableError
from xmr.experts.fusers import create_fuser, load_fuser, pack_items, save_fuser, scores_numpy


def _rows(d=4):
    e = np.eye(d, dtype=np.float32)
    return [{"ocr": [(e[1], None)], "subtitles": [(e[2], 1.5), (e[3], 40.0), (e[0], 50.0)]}, {},
            {"ocr": [(e[1], None)] * 6, "other": [(e[0], None)]}]


def test_pack_items_hand_case():
    t = pack_items(np.eye(3, 4), _rows(), ["ocr", "subtitles"], max_rows=2)
    assert t.x.shape == (3, 4, 4)  # 1 visual + 1 ocr + 2 subtitles (max_rows) at most
    assert t.kind.tolist() == [[0, 1, 2, 2], [0, 0, 0, 0], [0, 1, 1, 0]]
    assert t.mask.tolist() == [[True] * 4, [True, False, False, False], [True, True, True, False]]
    assert t.time[0].tolist() == [-1, -1, 1.5, 40.0]  # untimed rows: -1; the third cue is cut (max_rows 2)
    assert np.array_equal(t.x[0, 2], np.eye(4)[2]) and "other" not in str(t.kind)  # unknown experts ignored
    with pytest.raises(ConfigError, match="2 row sets"):
        pack_items(np.eye(3, 4), _rows()[:2], ["ocr"], 2)


def test_laff_hand_case_and_missing_sources():
    f = create_fuser("laff", dim=4, experts=("ocr", "subtitles"), hidden=4, heads=1)
    t = pack_items(np.eye(3, 4), _rows(), ["ocr", "subtitles"], 4)
    _, a = f.encode_items(t.torch())
    # item 1 has only its visual vector: all attention on it, fused = tanh(I v) normalised (identity init, b = 0)
    assert a[1, 0].tolist() == [1.0, 0.0, 0.0]
    fused, _ = f.encode_items(t.take([1]).torch())
    want = np.tanh(np.eye(4)[1])
    assert np.allclose(fused[0, 0].detach().numpy(), want / np.linalg.norm(want), atol=1e-6)
    # item 2 has no subtitles: zero attention there; attention sums to 1
    assert a[2, 0, 2] == 0 and torch.allclose(a.sum(-1), torch.ones(3, 1))
    q = np.eye(4, dtype=np.float32)[:2]
    s, c = scores_numpy(f, q, t, contributions=True)
    assert s.shape == (2, 3) and np.allclose(c.sum(-1), s, atol=1e-6)


@pytest.mark.parametrize("name", ["laff", "mmt", "concat"])
def test_fuser_scores_do_not_depend_on_batch_padding(name):
    rng = np.random.default_rng(0)
    f = create_fuser(name, dim=8, experts=("ocr", "subtitles"), hidden=16)
    rows = [{"ocr": [(rng.normal(size=8), None)]}, {"subtitles": [(rng.normal(size=8), t) for t in (0.0, 3.0, 9.0)]}]
    vis = rng.normal(size=(2, 8))
    q = rng.normal(size=(3, 8)).astype(np.float32)
    both = scores_numpy(f, q, pack_items(vis, rows, ["ocr", "subtitles"], 4))
    alone = scores_numpy(f, q, pack_items(vis[:1], rows[:1], ["ocr", "subtitles"], 4))  # no padding tokens
    assert np.allclose(both[:, :1], alone, atol=1e-5)


def test_mmt_weights_renormalise_over_present_experts_and_time_matters():
    f = create_fuser("mmt", dim=4, experts=("ocr", "subtitles"), hidden=8, heads=2)
    t = pack_items(np.eye(3, 4), _rows(), ["ocr", "subtitles"], 4)
    Q, V = f.encode_queries(torch.eye(4)[:2]), f.encode_items(t.torch())
    c = f.contributions(Q, V)
    assert torch.all(c[:, 1, 1:] == 0)  # item 1: visual only, its weight renormalised to 1
    assert torch.allclose(c[:, 1, 0], (Q[0][:, 0] * V[0][1, 0]).sum(-1), atol=1e-6)
    # the temporal embedding: moving a cue to another second changes the item's embedding
    t2 = pack_items(np.eye(1, 4), [{**_rows()[0], "subtitles": [(np.eye(4)[2], 20.0)]}], ["ocr", "subtitles"], 4)
    t3 = pack_items(np.eye(1, 4), [{**_rows()[0], "subtitles": [(np.eye(4)[2], 1.0)]}], ["ocr", "subtitles"], 4)
    q = np.eye(4, dtype=np.float32)
    assert not np.allclose(scores_numpy(f, q, t2), scores_numpy(f, q, t3))


def test_training_improves_on_the_synthetic_world_and_round_trips(tmp_path):
    from xmr.eval.ranks import ranks_t2i
    from xmr.synth.expert_features import EXPERTS, ExpertWorldConfig, make_expert_world
    from xmr.train.fusion import FusionTrainConfig, train_fuser

    w = make_expert_world(ExpertWorldConfig(items=160, captions=2, dim=16), seed=0)
    tokens = pack_items(w.visual, w.rows, EXPERTS, 4)
    train, test = w.targets < 120, w.targets >= 120
    gal = tokens.take(np.arange(120, 160))
    for name in ("laff", "mmt"):
        cfg = FusionTrainConfig(fuser=name, epochs=8, batch_size=32, lr=3e-3, fuser_config={"hidden": 16})
        before = create_fuser(name, dim=16, experts=EXPERTS, hidden=16)
        fuser, hist = train_fuser(cfg, w.queries[train], w.targets[train], tokens, list(EXPERTS))
        assert hist[-1]["loss"] < hist[0]["loss"]
        r0 = ranks_t2i(scores_numpy(before, w.queries[test], gal), w.targets[test] - 120)
        r1 = ranks_t2i(scores_numpy(fuser, w.queries[test], gal), w.targets[test] - 120)
        assert (r1 == 0).mean() > (r0 == 0).mean() + 0.05, name  # trained beats its initialisation on held-out items
        save_fuser(fuser, tmp_path / name)
        again = load_fuser(tmp_path / name)
        assert again.config == fuser.config and again.config.experts == EXPERTS
        assert np.allclose(scores_numpy(again, w.queries[test], gal), scores_numpy(fuser, w.queries[test], gal))
    with pytest.raises(ModelUnavailableError, match="directory not found"):
        load_fuser(tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"model": "xmr-composer"}')
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a expert fuser"):
        load_fuser(tmp_path / "bad")


def test_train_fusion_cli_and_search_with_the_fuser(tmp_path, capsys, tiny_encoder):
    d = tmp_path / "photos"
    d.mkdir()
    names = ("horse.png", "coffee.png", "rocket.jpg", "camera.png", "chelsea.png")
    for n in names:
        shutil.copy(SAMPLES / n, d / n)
        (d / (n + ".txt")).write_text(f"side text about the {n.split('.')[0]}")
    idx = tmp_path / "idx"
    code, _, err = run_cli(capsys, "-q", "index", str(d), "--index", str(idx), "--model", "tiny", "--experts", "sidecar")
    assert code == 0, err
    caps = tmp_path / "captions.jsonl"
    caps.write_text("".join(json.dumps({"media": f"photos/{n}", "captions": [f"a {n.split('.')[0]}", n]}) + "\n"
                            for n in names))
    out = tmp_path / "laff"
    code, text, err = run_cli(capsys, "train-fusion", "--index", str(idx), "--captions", str(caps), "--out", str(out),
                              "--epochs", "3", "--val-fraction", "0")
    assert code == 0, err
    assert "laff:" in text and (out / "model.safetensors").is_file()
    code, text, err = run_cli(capsys, "search", "a horse", "--index", str(idx), "--json", "-k", "5",
                              "--expert-fusion", f"laff:{out}")
    assert code == 0, err
    res = json.loads(text)
    assert res["stages"][-1]["fusion"] == f"laff:{out}" and len(res["results"]) == 5
    # each score is the fuser's score of the item's tokens, recomputed here
    from xmr.index.snapshot import open_reader
    from xmr.train.fusion import items_from_index

    fuser = load_fuser(out)
    store, reader = open_reader(idx)
    try:
        ids = [r["id"] for r in res["results"]]
        want = scores_numpy(fuser, tiny_encoder.encode_text(["a horse"]), items_from_index(reader, ids, ["sidecar"], 4))
    finally:
        store.close()
    assert np.allclose([r["score"] for r in res["results"]], want[0], atol=1e-5)
    assert all(r["match"] in ("visual", "sidecar") for r in res["results"])
    # wrong name for the folder, weights with a fuser, a folder that is not there: one clear line each, exit 2
    for argv, why in ((["--expert-fusion", f"mmt:{out}"], "holds a 'laff' fuser"),
                      (["--expert-fusion", f"laff:{out}", "--expert-weight", "sidecar=2"], "learned"),
                      (["--expert-fusion", f"laff:{tmp_path / 'none'}"], "directory not found"),
                      (["--expert-fusion", "mean"], "trained fuser laff:DIR")):
        code, _, err = run_cli(capsys, "search", "a horse", "--index", str(idx), *argv)
        assert code == 2 and why in err, (argv, err)
    code, _, err = run_cli(capsys, "train-fusion", "--index", str(idx), "--captions", str(caps), "--out", str(out))
    assert code == 2 and "not an empty folder" in err
    (tmp_path / "bad.jsonl").write_text('{"media": "photos/horse.png"}\n')
    code, _, err = run_cli(capsys, "train-fusion", "--index", str(idx), "--captions", str(tmp_path / "bad.jsonl"),
                           "--out", str(tmp_path / "o2"))
    assert code == 2 and "line 1" in err
