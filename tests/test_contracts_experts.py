"""Contract tests over the experts' registries (split from test_contracts.py, same habit): every registered
expert (``EXPERTS``) extracts rows from its input with a stable signature and a JSON ``describe()``; every
multimodal model (``MULTIMODAL_MODELS``: Everything at Once, ECLIPSE) maps any subset of {text, video, audio} to unit
vectors and round-trips save / load; every expert fuser (``EXPERT_FUSERS``) gives finite scores whose per-source
contributions sum to the score and do not depend on the rest of the batch."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SAMPLES
from xmr import registries

for _kind in ("expert", "multimodal", "expert_fuser"):  # fill the registries the parameter lists read
    registries.load_all(_kind)


# ======================================================================================================= experts
def _expert_input(name, tmp):
    """(media path, media type) each registered expert reads, with the sidecar / subtitle files it needs."""
    import shutil

    if name == "ocr":
        pytest.importorskip("rapidocr_onnxruntime", reason="the ocr expert needs xmr[ocr]")
        return str(SAMPLES / "page.png"), "image"
    if name == "sidecar":
        shutil.copy(SAMPLES / "horse.png", tmp / "horse.png")
        (tmp / "horse.txt").write_text("a horse")
        return str(tmp / "horse.png"), "image"
    if name == "subtitles":
        (tmp / "clip.mp4").write_bytes(b"")
        (tmp / "clip.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
        return str(tmp / "clip.mp4"), "video"
    if name == "audio":
        pytest.importorskip("av", reason="the audio expert decodes with PyAV")
        from xmr.synth.sounds import SynthSoundConfig, generate_sound_clips, write_av_clip

        c = generate_sound_clips(SynthSoundConfig(n=1, seed=0))[0]
        write_av_clip(tmp / "clip.mp4", c["frames"], 8, c["audio"])
        return str(tmp / "clip.mp4"), "video"
    pytest.fail(f"expert {name!r} is registered but has no input in tests/test_contracts.py _expert_input: add one")


@pytest.mark.parametrize("name", registries.EXPERTS.names())
def test_expert_contract(name, tmp_path):
    import json as _json

    from xmr.experts import ExpertText, create_expert

    ex = create_expert(name)
    path, kind = _expert_input(name, tmp_path)
    assert ex.name == name and ex.applies(kind)
    _json.dumps(ex.describe())
    sig = ex.signature(path, "a" * 64)
    assert sig == ex.signature(path, "a" * 64) and sig != ex.signature(path, "b" * 64)
    rows = ex.extract(path, kind)
    assert rows and all(isinstance(r, ExpertText) and r.text.strip() and r.field for r in rows)
    assert all((r.start is None) == (r.end is None) and (r.start is None or r.start <= r.end) for r in rows)
    import os

    for f in [f for f in ex.inputs(path) if os.path.exists(f)]:  # touching one changes the signature (re-index)
        st = os.stat(f)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert ex.signature(path, "a" * 64) != sig


# ===================================================================================================== multimodal
_TINY_MULTIMODAL = {"eao": {"video_dim": 5, "audio_dim": 4, "vocab": ["<unk>", "a", "beep", "red"], "width": 16,
                            "heads": 2, "embed_dim": 8},
                    "eclipse": {"video_dim": 5, "audio_dim": 4, "vocab": ["<unk>", "a", "beep", "red"], "width": 16,
                                "heads": 2, "embed_dim": 8}}


@pytest.mark.parametrize("name", registries.MULTIMODAL_MODELS.names())
def test_multimodal_contract(name, tmp_path):
    """Any subset of {text, video, audio} -> unit vectors of one width; save / load gives the same vectors."""
    import torch

    from xmr.config import config_from_dict

    if name not in _TINY_MULTIMODAL:
        pytest.fail(f"multimodal model {name!r} has no tiny config in tests/test_contracts.py _TINY_MULTIMODAL")
    cls = registries.MULTIMODAL_MODELS.get(name)
    m = cls(config_from_dict(cls.Config, _TINY_MULTIMODAL[name])).eval()
    v, a = torch.randn(3, 6, 5), torch.randn(3, 7, 4)
    with torch.no_grad():
        outs = [m.encode(text=["a red beep", "a", "zzz"]), m.encode(video=v), m.encode(audio=a),
                m.encode(video=v, audio=a)]
        if name == "eao":  # a fusion model: text fused with the others too
            outs.append(m.encode(text=["a", "b", "c"], video=v, audio=a))
        assert all(o.shape == (3, 8) and torch.allclose(o.norm(dim=1), torch.ones(3), atol=1e-5) for o in outs)
        m.save(tmp_path / "m")
        back = type(m).load(tmp_path / "m")
        assert torch.allclose(back.encode(video=v, audio=a), outs[3], atol=1e-6)


# ================================================================================================= expert fusers
@pytest.mark.parametrize("name", registries.EXPERT_FUSERS.names())
def test_expert_fuser_contract(name, tmp_path):
    """(B, I) finite scores; contributions sum to the score and are 0 for sources an item lacks; an item's score does
    not depend on the other items of the batch; save / load keeps the scores."""
    from xmr.experts.fusers import create_fuser, load_fuser, pack_items, save_fuser, scores_numpy

    rng = np.random.default_rng(0)
    f = create_fuser(name, dim=8, experts=("ocr", "sidecar"), hidden=8, seed=1)
    assert f.name == name and f.config.sources == ("visual", "ocr", "sidecar")
    rows = [{"ocr": [(rng.normal(size=8), None)], "sidecar": [(rng.normal(size=8), 2.0)] * 2}, {}]
    toks = pack_items(rng.normal(size=(2, 8)), rows, ["ocr", "sidecar"], 4)
    q = rng.normal(size=(3, 8)).astype(np.float32)
    s, c = scores_numpy(f, q, toks, contributions=True)
    assert s.shape == (3, 2) and s.dtype == np.float32 and np.isfinite(s).all()
    assert c.shape == (3, 2, 3) and np.allclose(c.sum(-1), s, atol=1e-5) and np.all(c[:, 1, 1:] == 0)
    assert np.allclose(scores_numpy(f, q, toks.take([1])), s[:, 1:], atol=1e-5)
    save_fuser(f, tmp_path / name)
    assert np.allclose(scores_numpy(load_fuser(tmp_path / name), q, toks), s, atol=1e-6)
