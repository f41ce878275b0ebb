"""``hf:`` and ``openclip:`` encoders, offline.

Tiny random checkpoints are written with ``save_pretrained`` into temp dirs (see ``_tiny_models.py``) and loaded
through ``create_encoder("hf:" + dir)``: the same path a real downloaded model takes. The Hugging Face cache points
at a temp dir and ``HF_HUB_OFFLINE=1`` is set, so nothing touches the network or ``~/.cache``; the one test of the
online path replaces the Hub probe with a fake that fails like an unreachable Hub.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import _tiny_models as tiny_models
from xmr.encoders import create_encoder
from xmr.errors import ConfigError, MissingExtraError, ModelUnavailableError

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "xmr" / "assets" / "samples"
CAPTIONS = json.loads((SAMPLES / "captions.json").read_text())
IMAGES = [SAMPLES / name for name in CAPTIONS]  # 8 real images of varied sizes and aspect ratios
TEXTS = list(CAPTIONS.values()) + ["", "x", "ünïcödé ✓ 日本語 " * 5]  # includes empty, tiny and over-long texts


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models run ~100x faster on one thread than on two contended ones (OpenMP spin-waits on a busy 2-core box)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", autouse=True)
def offline_hub(tmp_path_factory):
    """No network, no ~/.cache: HF_HUB_OFFLINE=1 and an empty temp Hugging Face cache, for this whole module."""
    import huggingface_hub.constants as hc

    cache = tmp_path_factory.mktemp("hf-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HOME", str(cache))
        mp.setenv("HF_HUB_CACHE", str(cache / "hub"))
        mp.setattr(hc, "HF_HUB_CACHE", str(cache / "hub"))
        yield cache


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return tiny_models.build("clip", tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="module")
def clip(clip_dir):
    return create_encoder(f"hf:{clip_dir}", device="cpu")


# ------------------------------------------------------------------------------------------------- CLIP, in depth


def test_clip_shapes_and_norms(clip):
    t = clip.encode_text(TEXTS)
    i = clip.encode_images(IMAGES)
    assert clip.dim == 16
    assert t.shape == (len(TEXTS), 16) and i.shape == (len(IMAGES), 16)
    assert t.dtype == np.float32 and i.dtype == np.float32
    assert np.isfinite(t).all() and np.isfinite(i).all()
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(i, axis=1), 1.0, atol=1e-5)
    sims = t @ i.T  # (texts, images)
    assert sims.shape == (len(TEXTS), len(IMAGES))
    assert np.abs(sims).max() <= 1.0 + 1e-5
    assert np.unique(i.round(5), axis=0).shape[0] == len(IMAGES)  # different images, different vectors


def test_clip_deterministic_across_calls_and_loads(clip, clip_dir):
    again = create_encoder(f"hf:{clip_dir}", device="cpu")
    np.testing.assert_array_equal(clip.encode_text(TEXTS), clip.encode_text(TEXTS))
    np.testing.assert_allclose(clip.encode_text(TEXTS), again.encode_text(TEXTS), atol=1e-6)
    np.testing.assert_allclose(clip.encode_images(IMAGES[:3]), again.encode_images(IMAGES[:3]), atol=1e-6)


def test_clip_batch_size_does_not_change_vectors(clip):
    np.testing.assert_allclose(clip.encode_text(TEXTS, batch_size=1), clip.encode_text(TEXTS, batch_size=8), atol=1e-5)
    np.testing.assert_allclose(clip.encode_images(IMAGES, batch_size=1), clip.encode_images(IMAGES, batch_size=8), atol=1e-5)


def test_path_and_pil_image_give_the_same_vector(clip):
    pil = [Image.open(p).convert("RGB") for p in IMAGES[:3]]
    np.testing.assert_allclose(clip.encode_images(IMAGES[:3]), clip.encode_images(pil), atol=1e-6)


def test_preprocessing_is_the_checkpoints_own_pil_processor(clip, clip_dir):
    """No torchvision: the checkpoint's image processor with the PIL backend, configured from its own json."""
    ip = clip.image_processor
    assert type(ip).__name__ == "CLIPImageProcessorPil"
    saved = json.loads((clip_dir / "preprocessor_config.json").read_text())
    assert ip.size == saved["size"] and list(ip.image_mean) == list(saved["image_mean"])


@pytest.mark.parametrize("name", [p.name for p in IMAGES])
def test_xmr_image_preprocess_matches_the_clip_processor(clip, name):
    from xmr.media.image import ImagePreprocess

    ip = clip.image_processor
    pre = ImagePreprocess(size=ip.size["shortest_edge"], crop=ip.crop_size["height"], mean=tuple(ip.image_mean),
                          std=tuple(ip.image_std))
    im = Image.open(SAMPLES / name).convert("RGB")
    np.testing.assert_allclose(pre(im), ip(images=[im], return_tensors="np")["pixel_values"][0], atol=1e-5)


def test_describe_names_the_model(clip, clip_dir):
    d = clip.describe()
    assert d["model_type"] == "clip" and d["dim"] == 16 and d["spec"] == f"hf:{clip_dir}"


# ------------------------------------------------------------------------------------------------- patch tokens


def test_clip_image_tokens_shape_class_token_first(clip):
    import torch

    tokens = clip.encode_image_tokens(IMAGES[:3])
    n_patches = (tiny_models.IMAGE // tiny_models.PATCH) ** 2
    assert clip.token_width == tiny_models.WIDTH  # the vision hidden size, not the projected dim (16)
    assert tokens.shape == (3, 1 + n_patches, tiny_models.WIDTH)
    assert tokens.dtype == torch.float32 and tokens.device == clip.device and not tokens.requires_grad
    assert torch.isfinite(tokens).all()
    # post_layernorm over every token: each token has ~zero mean and ~unit variance before the norm's affine part
    ln = clip.model.vision_model.post_layernorm
    normed = (tokens - ln.bias) / ln.weight
    torch.testing.assert_close(normed.mean(-1), torch.zeros(3, 1 + n_patches), atol=1e-4, rtol=0)


def test_clip_class_token_is_the_pooled_output_before_projection(clip):
    """tokens[:, 0] == vision_model(...).pooler_output, and projecting it gives the image embedding."""
    import torch

    pil = [Image.open(p).convert("RGB") for p in IMAGES[:2]]
    tokens = clip.encode_image_tokens(pil)
    pixels = clip.image_processor(images=pil, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        pooled = clip.model.vision_model(pixel_values=pixels).pooler_output
        embeds = clip.model.visual_projection(tokens[:, 0])
    torch.testing.assert_close(tokens[:, 0], pooled, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(clip.encode_images(pil, normalize=False), embeds.numpy(), atol=1e-5)
    torch.testing.assert_close(tokens, clip.encode_image_tokens(IMAGES[:2]), atol=1e-6, rtol=1e-6)  # paths == PIL


@pytest.mark.parametrize("model_type", ["chinese_clip", "altclip"])
def test_clip_family_image_tokens(model_type, tmp_path):
    import torch

    enc = create_encoder(f"hf:{tiny_models.build(model_type, tmp_path)}", device="cpu")
    tokens = enc.encode_image_tokens(IMAGES[:2])
    assert tokens.shape == (2, 1 + (tiny_models.IMAGE // tiny_models.PATCH) ** 2, enc.token_width)
    pixels = enc.image_processor(images=[Image.open(p).convert("RGB") for p in IMAGES[:2]], return_tensors="pt")
    with torch.no_grad():
        pooled = enc.model.vision_model(pixel_values=pixels["pixel_values"]).pooler_output
    torch.testing.assert_close(tokens[:, 0], pooled, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", ["siglip", "align"])
def test_image_tokens_refused_without_a_class_token(model_type, tmp_path):
    enc = create_encoder(f"hf:{tiny_models.build(model_type, tmp_path)}", device="cpu")
    with pytest.raises(ConfigError, match=r"class token are not available.*mean, seqtransf, xpool, prototypes") as info:
        enc.encode_image_tokens(IMAGES[:1])
    assert repr(model_type) in str(info.value)
    with pytest.raises(ConfigError, match="not available"):
        enc.token_width
    assert not hasattr(enc, "token_width") and getattr(enc, "token_width", None) is None


def test_tiny_token_width():
    enc = create_encoder("tiny", device="cpu")
    assert enc.token_width == enc.config.width == enc.encode_image_tokens(IMAGES[:1]).shape[-1]


# ------------------------------------------------------------------------------------------ every supported type


@pytest.mark.parametrize("model_type", tiny_models.MODEL_TYPES)
def test_model_type_loads_and_encodes(model_type, tmp_path):
    enc = create_encoder(f"hf:{tiny_models.build(model_type, tmp_path)}", device="cpu")
    assert enc.describe()["model_type"] == model_type
    t = enc.encode_text(TEXTS[:6], batch_size=4)
    i = enc.encode_images(IMAGES[:3], batch_size=2)
    assert t.shape == (6, enc.dim) and i.shape == (3, enc.dim)
    assert np.isfinite(t).all() and np.isfinite(i).all()
    np.testing.assert_allclose(np.linalg.norm(np.vstack([t, i]), axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(t, enc.encode_text(TEXTS[:6], batch_size=1), atol=1e-5)
    np.testing.assert_allclose(i, enc.encode_images(IMAGES[:3], batch_size=1), atol=1e-5)


def test_siglip_text_is_fixed_length_without_attention_mask(tmp_path):
    """SigLIP was trained on max_length-padded text pooled at the last position, with no attention mask."""
    enc = create_encoder(f"hf:{tiny_models.build('siglip', tmp_path)}", device="cpu")
    seen = []
    real = enc.model.get_text_features

    def spy(**kw):
        seen.append({k: tuple(v.shape) for k, v in kw.items()})
        return real(**kw)

    enc.model.get_text_features = spy
    enc.encode_text(["a", "a much longer caption about a cat"])
    assert seen == [{"input_ids": (2, tiny_models.CONTEXT)}]


# ------------------------------------------------------------------------------------------------ failure modes


def _fails_fast(spec: str, err=ModelUnavailableError, limit: float = 10.0) -> str:
    t = time.monotonic()
    with pytest.raises(err) as info:
        create_encoder(spec)
    assert time.monotonic() - t < limit
    return str(info.value)


def test_missing_directory(tmp_path):
    msg = _fails_fast(f"hf:{tmp_path / 'nope'}")
    assert "not found" in msg and "concept" in msg


def test_directory_without_a_model(tmp_path):
    assert "save_pretrained" in _fails_fast(f"hf:{tmp_path}")
    (tmp_path / "file.bin").write_bytes(b"x")
    _fails_fast(f"hf:{tmp_path / 'file.bin'}")


def test_incomplete_directory(tmp_path, clip_dir):
    (tmp_path / "config.json").write_text((clip_dir / "config.json").read_text())  # config but no weights/tokenizer
    assert "incomplete" in _fails_fast(f"hf:{tmp_path}")


@pytest.mark.parametrize("missing", [("tokenizer.json", "tokenizer_config.json"), ("preprocessor_config.json",)])
def test_directory_missing_tokenizer_or_processor(tmp_path, clip_dir, missing):
    """transformers 5 would build an empty tokenizer from nothing; the encoder must refuse, not embed garbage."""
    for f in clip_dir.iterdir():
        if f.name not in missing:
            (tmp_path / f.name).write_bytes(f.read_bytes())
    assert "incomplete" in _fails_fast(f"hf:{tmp_path}")


def test_unknown_hub_id_offline_fails_fast_with_instructions():
    msg = _fails_fast("hf:openai/clip-vit-base-patch32")
    assert "HF_HUB_OFFLINE" in msg and "hf download openai/clip-vit-base-patch32" in msg and "concept" in msg


def test_unreachable_hub_fails_fast_without_retrying(monkeypatch):
    """Online mode, but the Hub cannot be reached: one probe, then ModelUnavailableError; transformers never runs."""
    import huggingface_hub

    from xmr.encoders import hf

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)  # the legacy name switches offline mode too
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    calls = []

    def unreachable(self, repo_id, timeout=None, **kw):
        calls.append((repo_id, timeout))
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    monkeypatch.setattr(hf, "_load_parts", lambda *a, **k: pytest.fail("must not try to download"))
    msg = _fails_fast("hf:someone/some-clip", limit=5.0)
    assert calls == [("someone/some-clip", hf.HUB_PROBE_TIMEOUT)]
    assert "cannot be reached" in msg and "hf download someone/some-clip" in msg


def test_not_a_dual_encoder(tmp_path):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertModel(cfg).save_pretrained(tmp_path)
    assert "not a text-image dual encoder" in _fails_fast(f"hf:{tmp_path}", err=ConfigError)


def test_empty_arg():
    with pytest.raises(ConfigError, match="hub id or a local directory"):
        create_encoder("hf")


# ----------------------------------------------------------------------------------------------------- openclip


@pytest.fixture
def no_open_clip(monkeypatch):
    """Make `import open_clip` fail even where it is installed."""
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "open_clip" or name.startswith("open_clip."):
            raise ImportError("No module named 'open_clip'")
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, "open_clip", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_openclip_without_the_extra_names_the_install_command(no_open_clip):
    with pytest.raises(MissingExtraError, match=r"pip install 'xmr\[openclip\]'") as info:
        create_encoder("openclip:ViT-B-32:laion2b_s34b_b79k")
    assert "torchvision" in str(info.value)


def test_openclip_spec_parsing():
    from xmr.encoders.openclip import parse_arg

    assert parse_arg("ViT-B-32:laion2b_s34b_b79k") == ("ViT-B-32", "laion2b_s34b_b79k")
    assert parse_arg("ViT-B-32") == ("ViT-B-32", None)
    assert parse_arg(r"ViT-B-32:C:\ckpt.pt") == ("ViT-B-32", r"C:\ckpt.pt")
    hub = "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert parse_arg(hub) == (hub, None)
    with pytest.raises(ConfigError):
        parse_arg(None)


@pytest.fixture
def fake_open_clip(monkeypatch):
    """A stand-in for the open_clip API (tests/_fake_open_clip.py)."""
    from _fake_open_clip import make_fake_open_clip

    mod = make_fake_open_clip()
    monkeypatch.setitem(sys.modules, "open_clip", mod)
    return mod


def test_openclip_validates_arch_and_tag(fake_open_clip):
    with pytest.raises(ConfigError, match="did you mean ViT-B-32"):
        create_encoder("openclip:ViT-B-33:openai")
    with pytest.raises(ConfigError, match="laion2b_s34b_b79k"):
        create_encoder("openclip:ViT-B-32")  # no tag: the error lists them
    with pytest.raises(ConfigError, match="unknown pretrained tag"):
        create_encoder("openclip:ViT-B-32:nope")
    with pytest.raises(ModelUnavailableError, match="not found"):
        create_encoder("openclip:ViT-B-32:./missing.pt")
    assert fake_open_clip.calls == []


def test_openclip_uncached_hub_weights_offline_fail_fast(fake_open_clip):
    t = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE"):
        create_encoder("openclip:ViT-B-32:laion2b_s34b_b79k")
    assert time.monotonic() - t < 5 and fake_open_clip.calls == []


def test_openclip_encodes_with_a_local_checkpoint(fake_open_clip, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"weights")
    enc = create_encoder(f"openclip:ViT-B-32:{ckpt}", device="cpu")
    assert fake_open_clip.calls == [("ViT-B-32", str(ckpt))]
    t, i = enc.encode_text(["a", "bb"]), enc.encode_images(IMAGES[:2])
    assert t.shape == (2, 8) and i.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(i, axis=1), 1.0, atol=1e-5)


def test_openclip_cached_hub_weights_load_offline(fake_open_clip, offline_hub):
    """Weights already in the (temp) HF cache: no probe, open_clip gets the tag and loads them itself."""
    repo = offline_hub / "hub" / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    enc = create_encoder("openclip:ViT-B-32:laion2b_s34b_b79k", device="cpu")
    assert fake_open_clip.calls == [("ViT-B-32", "laion2b_s34b_b79k")] and enc.dim == 8
