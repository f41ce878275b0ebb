"""Issue 12 end to end: `xmr train --loss dhd` -> `hash:OUT` -> `xmr index` stores the bits in the binary backend ->
`xmr search` ranks Hamming candidates re-scored exactly; `xmr train --loss pcme` / `daa` -> the saved model reports
PCME uncertainty in `xmr search --json` and `xmr eval`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from xmr.errors import ConfigError
from xmr.train import TrainConfig, train

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "xmr" / "assets" / "samples"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from xmr.synth.images import generate_images

    return generate_images(tmp_path_factory.mktemp("synth") / "s", n=32, seed=3, size=24, noise=0.25,
                           test_fraction=0.25)


def _cfg(synth, **kw):
    base = dict(dataset=f"manifest:{synth}", model="tiny", epochs=2, batch_size=8, adapter_hidden=32, lr=5e-3)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def dhd_run(synth, tmp_path_factory):
    return train(_cfg(synth, loss="dhd", loss_config={"bits": 16}), tmp_path_factory.mktemp("dhd") / "run",
                 show_progress=False).out


@pytest.fixture(scope="module")
def pcme_run(synth, tmp_path_factory):
    return train(_cfg(synth, loss="pcme", loss_config={"num_samples": 3}), tmp_path_factory.mktemp("pcme") / "run",
                 show_progress=False).out


def test_dhd_run_saves_its_hash_heads_and_hash_encoder_codes_are_the_heads_signs(dhd_run):
    from xmr.encoders import create_encoder
    from xmr.encoders.trained import load_trained_module

    cfg = json.loads((dhd_run / "config.json").read_text())
    assert cfg["heads"] == {"hash": {"dim": 64, "bits": 16, "text": True}}
    _, _, module = load_trained_module(dhd_run)
    enc = create_encoder(f"hash:{dhd_run}")
    assert enc.dim == 16 and enc.bits == 16
    imgs = sorted(SAMPLES.glob("*.png"))[:3]
    v = enc.encode_images([str(p) for p in imgs])
    # by hand: frozen tiny features -> adapter -> L2 -> hash head (tanh(LN(Wy))) -> sign
    base = create_encoder("tiny")
    y = module.encode_image(torch.from_numpy(base.encode_images([str(p) for p in imgs])))
    h = module.heads["hash"]["image"](y).detach().numpy()
    assert np.array_equal(v > 0, h >= 0)
    np.testing.assert_allclose(v, h / np.linalg.norm(h, axis=1, keepdims=True), atol=1e-5)
    t = enc.encode_text(["a red circle"])
    assert t.shape == (1, 16) and np.isfinite(t).all()
    # the trained: view of the same folder is the float model (adapters only)
    assert create_encoder(f"trained:{dhd_run}").dim == 64


def test_index_hash_model_stores_bits_and_search_reranks_exactly(dhd_run, tmp_path, capsys):
    from xmr.encoders import create_encoder
    from xmr.index import IndexStore

    folder = tmp_path / "photos"
    shutil.copytree(SAMPLES, folder, ignore=shutil.ignore_patterns("*.md", "*.json"))
    idx = str(tmp_path / "idx")
    code, out, err = run_cli(capsys, "-q", "index", str(folder), "--index", idx, "--model", f"hash:{dhd_run}")
    assert code == 0, err
    assert "binary" in out  # the backend line: a hash model's index searches bits by default
    with IndexStore(idx) as st:
        assert st.vector_backend_record()["name"] == "binary"
        assert st.count() == len(list(folder.iterdir()))
    assert list((Path(idx)).glob("*.bfaiss"))  # the FAISS binary index: 2 bytes per item for 16 bits
    code, out, err = run_cli(capsys, "search", "a cat", "--index", idx, "--k", "3", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert len(d["results"]) == 3 and "uncertainty" not in d
    first = [s for s in d["stages"] if s["stage"] == "first-stage"][0]
    assert first["backend"] == "binary" and first["rerank"]["exact"] is True
    # the scores are the exact inner products of the relaxed codes (re-rank), not Hamming counts
    enc = create_encoder(f"hash:{dhd_run}")
    q = enc.encode_text(["a cat"])[0]
    for r in d["results"]:
        v = enc.encode_images([r["path"]])[0]
        assert r["score"] == pytest.approx(float(q @ v), abs=1e-4)


def test_hash_encoder_refuses_a_model_without_hash_heads(pcme_run):
    from xmr.encoders import create_encoder

    with pytest.raises(ConfigError, match="has no hash head: train one with"):
        create_encoder(f"hash:{pcme_run}")


def test_pcme_run_saves_uncertainty_heads_and_search_json_reports_them(pcme_run, tmp_path, capsys):
    from xmr.encoders import create_encoder

    cfg = json.loads((pcme_run / "config.json").read_text())
    unc = cfg["heads"]["uncertainty"]
    assert unc["dim"] == 64 and unc["num_samples"] == 3 and unc["a"] > 0
    enc = create_encoder(f"trained:{pcme_run}")
    assert enc.probabilistic and not create_encoder("tiny").__dict__.get("probabilistic", False)
    emb, u = enc.encode_with_uncertainty("text", ["a red circle", "a blue square on the left"])
    np.testing.assert_allclose(emb, enc.encode_text(["a red circle", "a blue square on the left"]), atol=1e-5)
    from xmr.encoders.trained import load_trained_module

    _, _, module = load_trained_module(pcme_run)
    f = create_encoder("tiny").encode_text(["a red circle"])
    by_hand = module.heads["uncertainty"]["text"](torch.from_numpy(f)).mean().item()
    assert u[0] == pytest.approx(by_hand, abs=1e-5)

    folder = tmp_path / "photos"
    shutil.copytree(SAMPLES, folder, ignore=shutil.ignore_patterns("*.md", "*.json"))
    idx = str(tmp_path / "idx")
    assert run_cli(capsys, "-q", "index", str(folder), "--index", idx, "--model", f"trained:{pcme_run}")[0] == 0
    code, out, err = run_cli(capsys, "search", "a red circle", "--index", idx, "--k", "2", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["uncertainty"]["query"][0]["log_sigma"] == pytest.approx(by_hand, abs=1e-4)
    for r in d["results"]:
        _, ur = enc.encode_with_uncertainty("image", [r["path"]])
        assert r["uncertainty"] == pytest.approx(float(ur[0]), abs=1e-4)


def test_eval_reports_uncertainty_for_a_probabilistic_model(pcme_run, synth, capsys):
    code, out, err = run_cli(capsys, "eval", "--dataset", f"manifest:{synth}", "--split", "test", "--model",
                             f"trained:{pcme_run}", "--json")
    assert code == 0, err
    d = json.loads(out)
    u = d["uncertainty"]
    assert u["t2i"]["queries"] == sum(b["queries"] for b in u["t2i"]["bins"])
    assert len(u["t2i"]["bins"]) == 3 and all(0 <= b["R@1"] <= 100 for b in u["t2i"]["bins"])
    assert u["t2i"]["log_sigma"]["min"] <= u["t2i"]["log_sigma"]["mean"] <= u["t2i"]["log_sigma"]["max"]
    top = u["t2i"]["most_uncertain"]
    assert len(top) == 5 and top[0]["log_sigma"] == u["t2i"]["log_sigma"]["max"]
    assert [t["log_sigma"] for t in top] == sorted((t["log_sigma"] for t in top), reverse=True)
    code, out, err = run_cli(capsys, "eval", "--dataset", f"manifest:{synth}", "--split", "test", "--model",
                             f"trained:{pcme_run}")
    assert code == 0 and "uncertainty t2i: mean log sigma" in out


def test_hash_index_bad_input_is_one_clear_line(dhd_run, tmp_path, capsys):
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLES, folder, ignore=shutil.ignore_patterns("*.md", "*.json"))
    idx = str(tmp_path / "idx")
    assert run_cli(capsys, "-q", "index", str(folder), "--index", idx, "--model", f"hash:{dhd_run}")[0] == 0
    vec = tmp_path / "q.npy"
    np.save(vec, np.ones(32, np.float32))  # a 32-wide query against 16-bit codes
    code, out, err = run_cli(capsys, "search", "--vector", str(vec), "--index", idx)
    assert code == 2 and "16" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "index", str(folder), "--index", str(tmp_path / "i1"), "--model", "hash:")
    assert code == 2 and "hash: needs the folder" in err
    code, _, err = run_cli(capsys, "index", str(folder), "--index", str(tmp_path / "i2"), "--model",
                           f"hash:{tmp_path / 'missing'}")
    assert code == 2 and "missing" in err


def test_uncertainty_bins_hand_case_and_errors():
    from xmr.eval.uncertainty import uncertainty_bins

    u = np.array([0.3, 0.1, 0.2, 0.6, 0.5, 0.4])
    ranks = np.array([0, 0, 0, 3, 0, 1])  # least uncertain (0.1, 0.2) both hits; (0.3, 0.4): 1 of 2; (0.5, 0.6): 1
    b = uncertainty_bins(u, ranks, bins=3)
    assert [x["R@1"] for x in b["bins"]] == [100.0, 50.0, 50.0]
    assert [(x["log_sigma_min"], x["log_sigma_max"]) for x in b["bins"]] == [(0.1, 0.2), (0.3, 0.4), (0.5, 0.6)]
    assert b["queries"] == 6 and b["spearman_rank"] > 0
    u0 = u.copy()
    uncertainty_bins(u, ranks, 2)
    assert np.array_equal(u, u0)  # inputs untouched
    with pytest.raises(ConfigError, match="one per query"):
        uncertainty_bins(u, ranks[:5])
    with pytest.raises(ConfigError, match="cannot fill 7"):
        uncertainty_bins(u, ranks, 7)
    with pytest.raises(ConfigError, match="NaN"):
        uncertainty_bins(np.array([np.nan, 0.1]), np.array([0, 1]), 1)
