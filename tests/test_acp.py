"""ACP (adaptive cross-modal prototypes, xmr.train.acp) and `xmr adapt`: k-means prototypes, the loss terms,
determinism, the written trained:DIR model, and bad input (clear errors, nothing written)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from xmr.errors import ConfigError
from xmr.train.acp import ACPConfig, ACPModel, _entropy, acp_losses, adapt, spherical_kmeans


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_spherical_kmeans_finds_three_directions():
    rng = np.random.default_rng(0)
    axes = np.eye(3)
    x = _unit(np.concatenate([a + 0.05 * rng.normal(size=(20, 3)) for a in axes]))
    c = spherical_kmeans(x, 3, seed=1)
    assert np.allclose(np.sort(np.abs(c @ axes.T).max(0)), 1.0, atol=0.01)  # one centroid per axis
    with pytest.raises(ConfigError, match="cannot make 5 prototypes"):
        spherical_kmeans(x[:4], 5)


def test_mutual_information_term_hand_computed():
    # confident and balanced assignments over K prototypes: H(mean) - mean H = log K
    p = torch.eye(4)
    assert float(_entropy(p.mean(0)) - _entropy(p).mean()) == pytest.approx(np.log(4), abs=1e-5)
    p = torch.full((4, 4), 0.25)  # uniform everywhere: no information
    assert float(_entropy(p.mean(0)) - _entropy(p).mean()) == pytest.approx(0.0, abs=1e-6)


def test_losses_are_finite_and_reach_every_head():
    rng = np.random.default_rng(0)
    cfg = ACPConfig(prototypes=3, hidden=8)
    m = ACPModel(6, 6, cfg)
    xs, ts, xt = (torch.from_numpy(_unit(rng.normal(size=(8, 6)))) for _ in range(3))
    cs, ct, ctxt = (torch.from_numpy(spherical_kmeans(a.numpy(), 3)) for a in (xs, xt, ts))
    parts = acp_losses(m, xs, ts, xt, cs, ct, ctxt, cfg)
    assert all(torch.isfinite(v) for v in parts.values())
    parts["total"].backward()
    for name in ("p_src", "p_tgt", "p_txt"):
        assert getattr(m, name).grad.abs().sum() > 0
    # residual heads start at the identity (up = 0): the first gradients reach `up`
    assert m.heads.text.up.weight.grad.abs().sum() > 0 and m.heads.image.up.weight.grad.abs().sum() > 0


def _toy(seed=0):
    rng = np.random.default_rng(seed)
    si, st, ti = _unit(rng.normal(size=(24, 6))), _unit(rng.normal(size=(48, 6))), _unit(rng.normal(size=(20, 6)))
    return si, st, np.repeat(np.arange(24), 2), ti


def test_adapt_is_deterministic_and_differs_from_source_only():
    si, st, t2i, ti = _toy()
    cfg = ACPConfig(prototypes=3, hidden=8, epochs=2, batch_size=16)
    a, b = adapt(si, st, t2i, ti, cfg), adapt(si, st, t2i, ti, cfg)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    c = adapt(si, st, t2i, ti, cfg, source_only=True)
    assert not torch.equal(a.image.up.weight, c.image.up.weight)
    with pytest.raises(ConfigError, match="same frozen model"):
        adapt(si, st, t2i, ti[:, :4], cfg)
    with pytest.raises(ConfigError):
        ACPConfig(prototypes=1)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from xmr.synth.images import generate_images

    return generate_images(tmp_path_factory.mktemp("synth") / "s", n=24, seed=3, size=24, noise=0.25)


def test_cli_adapt_writes_a_trained_model(capsys, synth, tmp_path):
    idx, out = tmp_path / "idx", tmp_path / "adapted"
    code, _, err = run_cli(capsys, "-q", "index", str(synth.parent), "--index", str(idx), "--model", "tiny")
    assert code == 0, err
    code, stdout, err = run_cli(capsys, "adapt", "--index", str(idx), "--source", f"manifest:{synth}", "--out",
                                str(out), "--epochs", "2", "--prototypes", "3", "--json")
    assert code == 0, err
    d = json.loads(stdout)
    assert d["base"] == "tiny" and d["target_items"] == 24 and d["model"] == f"trained:{out}"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["mode"] == "adapter" and cfg["training"]["method"] == "acp" and cfg["training"]["acp"]["epochs"] == 2
    from xmr import create_encoder

    enc = create_encoder(f"trained:{out}")
    v = enc.encode_text(["a red circle"], show_progress=False)
    assert v.shape == (1, enc.dim) and np.isclose(np.linalg.norm(v), 1.0, atol=1e-5)
    # bad input: an --out that is not empty, too many prototypes, an empty index -> exit 2, nothing written
    code, _, err = run_cli(capsys, "adapt", "--index", str(idx), "--source", f"manifest:{synth}", "--out", str(out))
    assert code == 2 and "not empty" in err
    code, _, err = run_cli(capsys, "adapt", "--index", str(idx), "--source", f"manifest:{synth}", "--out",
                           str(tmp_path / "o2"), "--prototypes", "99")
    assert code == 2 and "fewer than --prototypes" in err and not (tmp_path / "o2").exists()
    code, _, err = run_cli(capsys, "adapt", "--index", str(tmp_path / "none"), "--source", f"manifest:{synth}",
                           "--out", str(tmp_path / "o3"))
    assert code == 2 and not (tmp_path / "o3").exists()
