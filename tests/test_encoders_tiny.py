"""``tiny`` encoder: shapes, normalisation, token outputs, seeded init, save/load, gradients, errors."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xmr.encoders import create_encoder
from xmr.encoders.tiny import TinyConfig, TinyDualEncoder, TinyEncoder, tokenize
from xmr.errors import ConfigError, ModelUnavailableError
from xmr.media.image import load_image

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "xmr" / "assets" / "samples"
CAPTIONS = json.loads((SAMPLES / "captions.json").read_text())
PATHS = [SAMPLES / name for name in CAPTIONS]
TEXTS = list(CAPTIONS.values())


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run far faster on one thread than on two contended ones (OpenMP spin-waits on a busy box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def images():
    return [load_image(p) for p in PATHS]  # decoded once: 8 real photos / drawings of varied sizes


@pytest.fixture(scope="module")
def enc() -> TinyEncoder:
    return create_encoder("tiny", device="cpu")


def test_default_announces_random_init(caplog):
    with caplog.at_level(logging.WARNING, logger="xmr.encoders.tiny"):
        create_encoder("tiny", device="cpu")
    assert "random initialisation" in caplog.text and "meaningless until trained" in caplog.text


def test_shapes_norms_no_nan(enc, images):
    c = enc.config
    texts = TEXTS + ["", "ü" * 100]  # empty and over-long (cut at context_length bytes)
    t, i = enc.encode_text(texts), enc.encode_images(images)
    assert enc.dim == c.dim == 64
    assert t.shape == (len(texts), 64) and i.shape == (len(images), 64) and t.dtype == i.dtype == np.float32
    assert np.isfinite(t).all() and np.isfinite(i).all()
    np.testing.assert_allclose(np.linalg.norm(np.vstack([t, i]), axis=1), 1.0, atol=1e-5)
    assert (t @ i.T).shape == (len(texts), len(images))
    assert np.unique(i.round(5), axis=0).shape[0] == len(images)


def test_token_outputs(enc, images):
    c = enc.config
    img_tokens = enc.encode_image_tokens(images[:3])
    assert isinstance(img_tokens, torch.Tensor) and img_tokens.shape == (3, 1 + c.num_patches, c.width) == (3, 17, 64)
    txt_tokens, mask = enc.encode_text_tokens(["a cat", "ab"])
    assert txt_tokens.shape == (2, c.context_length, c.width) and mask.shape == (2, c.context_length)
    assert mask.sum(1).tolist() == [len("a cat") + 2, len("ab") + 2]  # BOS + bytes + EOS
    assert not img_tokens.requires_grad and torch.isfinite(img_tokens).all() and torch.isfinite(txt_tokens).all()
    # the pooled embedding is the projected class token
    pooled = enc.model.image_proj(img_tokens[:, 0])
    np.testing.assert_allclose(F.normalize(pooled, dim=-1).detach().numpy(), enc.encode_images(images[:3]), atol=1e-5)


def test_paths_and_pil_and_batch_sizes_agree(enc, images):
    np.testing.assert_allclose(enc.encode_images(PATHS[:3]), enc.encode_images(images[:3]), atol=1e-6)
    np.testing.assert_allclose(enc.encode_images(images, batch_size=1), enc.encode_images(images, batch_size=8), atol=1e-5)
    np.testing.assert_allclose(enc.encode_text(TEXTS, batch_size=1), enc.encode_text(TEXTS, batch_size=8), atol=1e-5)


def test_tokenizer_is_utf8_bytes():
    ids = tokenize(["hé", "x" * 100], context_length=8)
    assert ids.shape == (2, 8)
    assert ids[0].tolist()[:5] == [256, ord("h"), 0xC3, 0xA9, 257] and ids[0, 5:].eq(258).all()
    assert ids[1, -1].item() == 257  # truncated texts still end with EOS


def test_seeded_init_is_deterministic_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = TinyDualEncoder(TinyConfig()), TinyDualEncoder(TinyConfig())
    assert torch.equal(state, torch.random.get_rng_state())
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    other = TinyDualEncoder(TinyConfig(seed=1))
    assert not torch.equal(a.image_proj.weight, other.image_proj.weight)


def test_save_load_round_trip(enc, images, tmp_path):
    enc.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = create_encoder(f"tiny:{tmp_path / 'm'}", device="cpu")
    assert loaded.config == enc.config
    np.testing.assert_array_equal(loaded.encode_images(images), enc.encode_images(images))
    np.testing.assert_array_equal(loaded.encode_text(TEXTS), enc.encode_text(TEXTS))


def test_non_default_config_round_trip(tmp_path, images):
    cfg = TinyConfig(image_size=48, patch_size=16, width=32, layers=1, heads=2, context_length=12, dim=24, seed=7)
    TinyDualEncoder(cfg).save(tmp_path)
    loaded = create_encoder(f"tiny:{tmp_path}", device="cpu")
    assert loaded.config == cfg and loaded.encode_images(images[:2]).shape == (2, 24)
    assert loaded.encode_image_tokens(images[:1]).shape == (1, 1 + 9, 32)


def test_training_step_lowers_symmetric_infonce(images):
    """Gradients reach both towers and the logit scale; a few Adam steps fit 8 image-caption pairs better."""
    model = TinyDualEncoder(TinyConfig())
    wrapper = TinyEncoder(model, device="cpu")
    pixels, ids = wrapper.pixels(images), wrapper.tokenize(TEXTS)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    labels = torch.arange(len(images))

    def loss_fn():
        img, txt, scale = model(pixels, ids)
        logits = scale * img @ txt.T  # (images, texts); pair i is the positive of row/column i
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    first = loss_fn()
    first.backward()
    for name in ("patch_embed.weight", "image_proj.weight", "token_embed.weight", "text_proj.weight", "logit_scale"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    opt.step()
    for _ in range(15):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss_fn().item() < 0.5 * first.item()


def test_missing_or_bad_directories(tmp_path):
    with pytest.raises(ModelUnavailableError, match="directory not found"):
        create_encoder(f"tiny:{tmp_path / 'nope'}")
    with pytest.raises(ModelUnavailableError, match="config.json is missing"):
        create_encoder(f"tiny:{tmp_path}")
    TinyDualEncoder(TinyConfig()).save(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match="model.safetensors is missing"):
        create_encoder(f"tiny:{tmp_path}")


def test_corrupt_weights_and_foreign_configs(tmp_path):
    TinyDualEncoder(TinyConfig()).save(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelUnavailableError, match="corrupt"):
        create_encoder(f"tiny:{tmp_path}")
    TinyDualEncoder(TinyConfig(width=32, heads=2)).save(tmp_path / "w32")
    cfg = json.loads((tmp_path / "w32" / "config.json").read_text())
    (tmp_path / "w32" / "config.json").write_text(json.dumps({**cfg, "width": 64}))  # weights no longer fit
    with pytest.raises(ModelUnavailableError, match="does not fit"):
        create_encoder(f"tiny:{tmp_path / 'w32'}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(ConfigError, match="hf:"):
        create_encoder(f"tiny:{tmp_path}")
    (tmp_path / "config.json").write_text(json.dumps({"model": "xmr-tiny", "wdith": 64}))
    with pytest.raises(ConfigError, match="unknown field"):
        create_encoder(f"tiny:{tmp_path}")


@pytest.mark.parametrize(
    "kw", [dict(image_size=30, patch_size=8), dict(width=30, heads=4), dict(context_length=2), dict(dim=0)]
)
def test_config_validation(kw):
    with pytest.raises(ConfigError):
        TinyConfig(**kw)
