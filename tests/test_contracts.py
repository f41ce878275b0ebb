"""Contract tests over every registered component (timm's ``test_model_forward`` habit).

Each test is parametrised over a registry of :mod:`xmr.registries`, so registering a component is what gets it
tested. Components that need something to be built (weights, a fixture, a trained model) have an entry in one of the
tables below; a registered name without one fails with a message saying where to add it.

* encoders (``ENCODERS``): embeddings (N, dim) float32, L2-normalised, finite; capabilities match the methods;
  ``describe()`` is JSON;
* video heads (``VIDEO_HEADS``): similarity shape / range, the video embedding agrees with the similarity,
  ``score_frames`` agrees with ``similarity``, save / load round trip through :mod:`xmr.checkpoint`;
* re-scorers (``RESCORERS``): ``dense`` never writes to its input, keeps the shape, is finite, leaves the directions
  it does not claim unchanged, and ``topk`` ranks candidates like ``dense``;
* multi-query fusions (``FUSIONS``): (G, I) finite, padded queries ignored, one query = plain similarity;
* dataset loaders (``DATASETS``): the scheme's fixture loads into a consistent :class:`RetrievalDataset` whose
  canonical spec loads it again;
* re-rankers (``RERANKERS``): pair scores (P,) finite and independent of the pair order; ``rerank_dense`` pure;
* evaluation protocols (``PROTOCOLS``): perfect scores give R@1 = 100, metrics in range, input untouched;
* every registry: each entry has help text and a name a ``NAME:ARG`` spec can select.

Experts, multimodal models and expert fusers have theirs in ``tests/test_contracts_experts.py``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

import _clip_model
import _tiny_models as tiny_models
from conftest import FIXTURES, SAMPLES
from xmr import registries
from xmr.errors import ConfigError
from xmr.registries import DATASETS, ENCODERS, FUSIONS, PROTOCOLS, RERANKERS, RESCORERS, VIDEO_HEADS, load_all

load_all()  # import every module that registers something: the parameter lists below are the registries

VIDEO_FIXTURES = FIXTURES / "video_datasets"
IMAGES = [str(SAMPLES / n) for n in ("chelsea.png", "rocket.jpg", "coffee.png")]
TEXTS = ["a cat", "a rocket launch", "", "ünïcödé ✓ 日本語 " * 5]


def _missing(kind: str, name: str, table: str):
    pytest.fail(f"{kind} {name!r} is registered but tests/test_contracts.py has no entry for it in {table}: "
                "add one so the contract tests can build it")


def _json(obj) -> None:
    json.loads(json.dumps(obj))  # raises TypeError for anything that is not plain JSON


# ============================================================================================ registries themselves


@pytest.mark.parametrize("kind", sorted(registries.ALL))
def test_registry_entries_have_help_and_selectable_names(kind):
    for entry in registries.ALL[kind]:
        assert entry.name and entry.name == entry.name.strip() and ":" not in entry.name, (kind, entry.name)
        assert entry.help.strip(), f"{kind} {entry.name!r} has no help text (shown by `xmr models` / list_*)"


def test_registries_module_is_cheap_and_the_old_names_are_the_same_objects():
    code = ("import sys, xmr.registries; "
            "print([m for m in ('torch', 'numpy', 'transformers', 'xmr.encoders', 'xmr.rescore') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
    from xmr.data import DATASETS as data_datasets
    from xmr.encoders import ENCODERS as enc
    from xmr.eval import PROTOCOLS as protocols
    from xmr.heads import VIDEO_HEADS as heads
    from xmr.multiquery import FUSIONS as fusions
    from xmr.rerank import RERANKERS as rerankers
    from xmr.rescore import RESCORERS as rescorers

    assert (enc, heads, rescorers, rerankers, fusions, data_datasets, protocols) == (
        ENCODERS, VIDEO_HEADS, RESCORERS, RERANKERS, FUSIONS, DATASETS, PROTOCOLS)
    assert all(a is b for a, b in zip((enc, heads, rescorers, rerankers, fusions, data_datasets, protocols),
                                      (ENCODERS, VIDEO_HEADS, RESCORERS, RERANKERS, FUSIONS, DATASETS, PROTOCOLS)))
    assert set(load_all()) == set(registries.ALL) == set(registries.MODULES)  # "stage" too, with or without xmr.retrieval
    with pytest.raises(ConfigError, match="Available: encoder"):
        load_all("encoders")


# ======================================================================================================= encoders


def _hf_clip(request, tmp):
    return ("hf", tiny_models.build("clip", tmp / "clip"))


def _openclip(request, tmp):
    """The real open_clip when it imports (it needs a matching torchvision); else the API stand-in of
    tests/_fake_open_clip.py, which exercises xmr's wrapper (batching, normalisation, capabilities) all the same."""
    import sys

    try:
        import open_clip  # noqa: F401

        return ("openclip", "ViT-B-32:random")
    except Exception:  # not installed, or installed without a torchvision that imports beside this torch
        from _fake_open_clip import make_fake_open_clip

        saved = sys.modules.get("open_clip")
        sys.modules["open_clip"] = make_fake_open_clip()
        request.addfinalizer(lambda: sys.modules.__setitem__("open_clip", saved) if saved is not None
                             else sys.modules.pop("open_clip", None))
        return ("openclip", "ViT-B-32:openai")


def _video_xpool(request, tmp):
    from xmr.heads import create_head

    create_head("xpool", dim=64, num_frames=4).save(tmp / "xpool")  # tiny's dim
    return ("video", f"tiny+xpool@{tmp / 'xpool'}")


def _ts2net_vit(request, tmp):
    """A ts2net:DIR folder: TS2-Net (random parts) on a tiny random hf: CLIP, saved untrained."""
    import transformers

    from xmr.heads.ts2net_vit import TS2NetViT, TS2NetViTConfig, save_ts2net_vit

    d = tiny_models.build("clip", tmp / "clip")
    model = TS2NetViT(transformers.CLIPModel.from_pretrained(d), TS2NetViTConfig(dim=16, max_frames=4, num_frames=2))
    save_ts2net_vit(model, tmp / "ts2", f"hf:{d}")
    return ("ts2net", str(tmp / "ts2"))


def _trained_adapter(request, tmp):
    """A folder as `xmr train` writes it: adapters (random, projection) on the frozen tiny encoder."""
    from xmr.encoders.trained import AdapterConfig
    from xmr.train.model import AdapterModel

    AdapterModel(AdapterConfig(64, 32, 16, False, 0), AdapterConfig(64, 32, 16, False, 1), "tiny").save(tmp / "a", {})
    return ("trained", str(tmp / "a"))


def _trained_tiny(request, tmp):
    from xmr.encoders.tiny import TinyConfig
    from xmr.train.model import TinyModel

    TinyModel(TinyConfig(seed=3)).save(tmp / "t", {})
    return ("trained", str(tmp / "t"))


def _with_head(kind: str, config: dict, name: str):
    """A trained adapter folder carrying a loss's extra head (random weights): PCME uncertainty or DHD hash."""
    def build(request, tmp):
        from xmr.encoders.trained import AdapterConfig, build_head
        from xmr.train.model import AdapterModel

        AdapterModel(AdapterConfig(64, 32, 16, False, 0), AdapterConfig(64, 32, 16, False, 1), "tiny").save(
            tmp / kind, {}, {kind: (config, build_head(kind, config))})
        return (name, str(tmp / kind))
    return build


def _av_model(name: str):
    """A random Everything at Once / ECLIPSE folder (8x8 colour thumbnails, 40-band log-mel chunks, a tiny
    vocabulary), as xmr train-av writes it."""
    def build(request, tmp):
        from xmr.config import config_from_dict
        from xmr.registries import MULTIMODAL_MODELS, load_all

        load_all("multimodal")
        cls = MULTIMODAL_MODELS.get(name)
        cls(config_from_dict(cls.Config, {"vocab": ["<unk>", "a", "cat", "rocket"], "width": 16, "heads": 2,
                                          "embed_dim": 16, "word_dim": 8})).save(tmp / name)
        return (name, str(tmp / name))
    return build


#: encoder name -> {variant: how to build it}: a session fixture name, or a function (request, tmp dir) returning
#: (name, arg) for create_encoder
ENCODER_BUILDERS = {
    "concept": {"default": "concept_encoder"},
    "concept+lang": {"de": lambda request, tmp: ("concept+lang", "de")},  # the bundled German acquirer
    "tiny": {"default": "tiny_encoder"},
    "hf": {"clip": _hf_clip},
    "openclip": {"random": _openclip},
    "video": {"mean": lambda request, tmp: ("video", "tiny+mean"), "xpool": _video_xpool},
    "trained": {"adapter": _trained_adapter, "tiny": _trained_tiny, "tiny_video": _clip_model.trained_tiny_video,
                "pcme": _with_head("uncertainty", {"image_in": 64, "text_in": 64, "dim": 32, "a": 5.0, "b": 5.0},
                                   "trained")},
    "hash": {"dhd": _with_head("hash", {"dim": 32, "bits": 16, "text": True}, "hash")},
    "ts2net": {"vit": _ts2net_vit},
    "eao": {"random": _av_model("eao")},
    "eclipse": {"random": _av_model("eclipse")},
}
#: (name, variant) whose capabilities claim a method the encoder does not have; strict xfail, so the fix is noticed
CAPABILITY_BUGS: dict = {}  # (name, variant) -> reason, for a known capability bug (strict xfail)
ENCODER_CASES = [(n, v) for n in ENCODERS.names() for v in ENCODER_BUILDERS.get(n, {None: None})]


@pytest.fixture(scope="module", params=ENCODER_CASES, ids=lambda c: c[0] if c[1] in (None, "default") else f"{c[0]}-{c[1]}")
def encoder_case(request, tmp_path_factory):
    name, variant = request.param
    if variant is None:
        _missing("encoder", name, "ENCODER_BUILDERS")
    how = ENCODER_BUILDERS[name][variant]
    if isinstance(how, str):
        return request.param, request.getfixturevalue(how)
    from xmr.encoders import create_encoder

    n, arg = how(request, tmp_path_factory.mktemp(f"enc-{name}"))
    return request.param, create_encoder(f"{n}:{arg}", device="cpu")


def test_encoder_embeddings(encoder_case):
    (name, _), enc = encoder_case
    assert enc.spec.partition(":")[0] == name and enc.dim > 0
    t = enc.encode_text(TEXTS)
    caps = enc.capabilities  # a whole-clip video model embeds still clips of the photos instead (_clip_model)
    i = enc.encode_images(IMAGES) if caps.images else _clip_model.clip_vectors(enc, IMAGES)
    for x, n in ((t, len(TEXTS)), (i, len(IMAGES))):
        assert x.shape == (n, enc.dim) and x.dtype == np.float32 and np.isfinite(x).all()
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(enc.encode_text(TEXTS[:1]), t[:1], atol=1e-5)  # a text's vector ignores its batch


def test_encoder_capabilities_match_methods(encoder_case, request):
    from xmr.encoders.base import Capabilities

    (name, variant), enc = encoder_case
    if (name, variant) in CAPABILITY_BUGS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=CAPABILITY_BUGS[name, variant]))
    caps = enc.capabilities
    assert isinstance(caps, Capabilities)
    _json(caps.to_dict())
    assert caps.text and (caps.images or caps.clips)  # every encoder here is a dual encoder (of images or clips)
    assert caps.languages and all(isinstance(x, str) for x in caps.languages)
    if caps.patch_tokens:
        tok = enc.encode_image_tokens(IMAGES[:2])
        assert tok.ndim == 3 and tok.shape[0] == 2 and tok.shape[1] >= 2 and tok.shape[2] == enc.token_width
        assert torch.isfinite(torch.as_tensor(tok)).all()
    elif hasattr(enc, "encode_image_tokens"):
        with pytest.raises(ConfigError):
            enc.encode_image_tokens(IMAGES[:1])
    if caps.text_tokens:
        tok, mask = enc.encode_text_tokens(TEXTS[:2])
        assert tok.ndim == 3 and tok.shape[:2] == mask.shape and tok.shape[0] == 2 and mask.dtype == torch.bool
        assert mask.any(dim=1).all() and torch.isfinite(tok).all()
    else:
        assert not callable(getattr(enc, "encode_text_tokens", None))
    if caps.video:
        feats = enc.encode_frames([SAMPLES / "chelsea.png"] * 3)
        v = enc.video_pool(feats, np.arange(3, dtype=np.float64))
        assert v.shape == (enc.dim,) and abs(float(np.linalg.norm(v)) - 1) < 1e-4
    assert (getattr(enc, "video_rescorer", lambda: None)() is not None) == caps.video_rescoring
    if caps.sound:  # a video file's frames and sound track, as xmr.video.av makes their tokens
        c = enc.config
        v, a = np.random.default_rng(0).random((2, c.frames, c.video_dim)), np.random.default_rng(1).random(
            (2, c.chunks, c.audio_dim))
        for x in (enc.encode_av(v, a), enc.encode_av(v, None)):
            assert x.shape == (2, enc.dim) and np.isfinite(x).all()
            np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
    else:
        assert not callable(getattr(enc, "encode_av", None))
    assert callable(getattr(enc, "encode_clips", None)) == caps.clips  # clip_frames: _clip_model.clip_vectors
    for cap in ("patch_tokens", "text_tokens", "video", "video_rescoring", "sound", "clips"):
        if not getattr(caps, cap):
            with pytest.raises(ConfigError, match="needs"):
                enc.require(cap, "this test")


def test_encoder_describe_is_json(encoder_case):
    (_, _), enc = encoder_case
    d = enc.describe()
    _json(d)
    assert d["spec"] == enc.spec and d["dim"] == enc.dim


# ==================================================================================================== video heads

D, W, T, P = 16, 16, 4, 4
#: generic tiny settings, applied to whichever of these fields a head's Config has
_TINY_HEAD = {"dim": D, "max_frames": 8, "num_frames": T, "heads": 2, "width": W, "layers": 1, "select_k": 2,
              "num_prototypes": 3}
#: extra configurations worth a contract run (switches that change the parameters)
HEAD_VARIANTS = {"mean": {"proj": {"proj": True}}, "ts2net": {"tokens": {"shift_mode": "tokens"}}}
HEAD_CASES = [(n, v) for n in VIDEO_HEADS.names() for v in (None, *HEAD_VARIANTS.get(n, {}))]


def _tiny_head(name: str, variant: str | None, seed: int = 0):
    from xmr.heads import create_head

    cls = VIDEO_HEADS.get(name)
    have = {f.name for f in fields(cls.Config)}
    over = {k: v for k, v in _TINY_HEAD.items() if k in have}
    return create_head(name, seed=seed, **over, **HEAD_VARIANTS.get(name, {}).get(variant, {}))


def _head_inputs(head, bt: int = 3, bv: int = 5):
    g = torch.Generator().manual_seed(1)
    shape = (bv, T, 1 + P, W) if head.patch_tokens else (bv, T, D)
    return torch.randn(bt, D, generator=g), torch.randn(*shape, generator=g)


@pytest.mark.parametrize("name,variant", HEAD_CASES, ids=[n if v is None else f"{n}-{v}" for n, v in HEAD_CASES])
def test_video_head_forward(name, variant):
    import torch.nn.functional as F

    head = _tiny_head(name, variant).eval()
    assert head.name == name and head.needs_rescoring == (not head.query_independent or head.multi_vector)
    text, frames = _head_inputs(head)
    with torch.no_grad():
        sims = head.similarity(text, frames)
        assert sims.shape == (3, 5) and torch.isfinite(sims).all() and (sims.abs() <= 1 + 1e-5).all()
        cand = head.candidate_embedding(frames)
        assert cand.shape == (5, D) and torch.allclose(cand.norm(dim=-1), torch.ones(5), atol=1e-5)
        if head.query_independent:
            v = head.embed_video(frames)
            if head.multi_vector:
                assert v.ndim == 3 and v.shape[0] == 5 and v.shape[-1] == D
            else:
                assert v.shape == (5, D)
                torch.testing.assert_close(sims, F.normalize(text, dim=-1) @ v.T, atol=1e-5, rtol=1e-5)
    exact = head.score_frames(text[0].numpy(), [f.numpy() for f in frames])  # the index's re-scoring path
    np.testing.assert_allclose(exact, sims[0].numpy(), atol=1e-5)


@pytest.mark.parametrize("name,variant", HEAD_CASES, ids=[n if v is None else f"{n}-{v}" for n, v in HEAD_CASES])
def test_video_head_save_load_round_trip(name, variant, tmp_path):
    from xmr.checkpoint import load_checkpoint
    from xmr.heads import load_head

    head = _tiny_head(name, variant, seed=2).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # move every weight away from its initialisation: loading must restore them all
        for p in head.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    head.save(tmp_path / "h")
    assert load_checkpoint(tmp_path / "h", "xmr-video-head", "test").config["head"] == name
    again = load_head(tmp_path / "h")
    assert type(again) is type(head) and again.config == head.config and not again.training
    assert head.state_dict().keys() == again.state_dict().keys()
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in head.state_dict().items())
    text, frames = _head_inputs(head)
    with torch.no_grad():
        assert torch.equal(again.similarity(text, frames), head.similarity(text, frames))


# ===================================================================================================== re-scorers


@pytest.mark.parametrize("name", RESCORERS.names())
def test_rescorer_contract(name):
    from xmr.rescore import QueryBank, Rescorer
    from xmr.rescore.base import DIRECTIONS

    r = RESCORERS.get(name)()  # default parameters
    assert isinstance(r, Rescorer) and r.name == name and r.bank_use in ("none", "optional", "required")
    _json(r.params())
    rng = np.random.default_rng(0)
    sims = rng.uniform(-0.2, 0.6, (12, 16)).astype(np.float32)
    sims.flags.writeable = False  # an in-place write raises
    before = sims.copy()
    bank = QueryBank.from_sims(rng.uniform(-0.2, 0.6, (20, 16)).astype(np.float32))
    banks = {"none": [None], "optional": [None, bank], "required": [bank]}[r.bank_use]
    if r.bank_use == "required":
        with pytest.raises(ConfigError, match="querybank"):
            r.dense(sims, "t2i", None)
    for b in banks:
        rec = r.record(b)
        _json(rec)
        assert rec["step"] == name
        for d in DIRECTIONS:
            out = np.asarray(r.dense(sims, d, b))
            assert out.shape == sims.shape and np.isfinite(out).all()
            np.testing.assert_array_equal(sims, before)
            if d not in r.directions(b):
                np.testing.assert_array_equal(out, sims)  # a direction it does not claim is left as it was
        k = 12  # candidates per query (csls needs at least its k=10)
        cols = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(sims, cols, 1)
        try:
            top = np.asarray(r.topk(scores, cols, b))
        except ConfigError:
            assert b is None or r.bank_use == "none"  # only statistics of other test queries are a reason
            continue
        dense = np.take_along_axis(np.asarray(r.dense(sims, "t2i", b), dtype=np.float64), cols, 1)
        np.testing.assert_array_equal(np.argsort(-top, axis=1, kind="stable"),
                                      np.argsort(-dense, axis=1, kind="stable"))


# ====================================================================================================== fusions


def _query_weighting(dim: int):
    from xmr.multiquery import QueryWeighting, QueryWeightingConfig

    return QueryWeighting(QueryWeightingConfig(dim=dim))


#: fusion name -> model(dim) for fusions that need one
FUSION_MODELS = {"learned": _query_weighting}


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_fusion_contract(name):
    from xmr.multiquery import fuse_sims

    fuse = FUSIONS.get(name)
    g_, n_, d_, i_ = 4, 3, 8, 10
    rng = np.random.default_rng(0)
    q = _unit(rng.standard_normal((g_, n_, d_)))
    gallery = _unit(rng.standard_normal((i_, d_)))
    mask = np.ones((g_, n_), dtype=bool)
    mask[0, 2] = mask[1, 1:] = False
    model = FUSION_MODELS[name](d_) if name in FUSION_MODELS else None
    try:
        out = fuse(q, mask, gallery, model)
    except ConfigError as e:
        if model is None:
            _missing("fusion", name, f"FUSION_MODELS ({e})")
        raise
    q0, g0 = q.copy(), gallery.copy()
    assert out.shape == (g_, i_) and np.isfinite(out).all()
    np.testing.assert_array_equal(q, q0)
    np.testing.assert_array_equal(gallery, g0)
    padded = q.copy()
    padded[~mask] = 100.0  # what padding holds must not matter
    np.testing.assert_allclose(fuse(padded, mask, gallery, model), out, atol=1e-6)
    np.testing.assert_allclose(fuse_sims(q, gallery, fuse=name, mask=mask, model=model), out, atol=1e-9)
    single = fuse(q[:, :1], np.ones((g_, 1), dtype=bool), gallery, model)  # one query: its plain similarity
    np.testing.assert_allclose(single, q[:, 0] @ gallery.T, atol=1e-5)


# ============================================================================================== dataset loaders


def _manifest(tmp: Path) -> str:
    from xmr.data import load_dataset, write_manifest

    return "manifest:" + write_manifest(load_dataset(f"coco:{FIXTURES / 'coco_tiny'}"), tmp / "eval.jsonl")


#: scheme -> spec of its fixture (a string, or a function of a temp dir that writes one and returns the spec)
DATASET_FIXTURES = {
    "coco": f"coco:{FIXTURES / 'coco_tiny'}",
    "cub": f"cub:{FIXTURES / 'cub_tiny'}",
    "sbu": f"sbu:{FIXTURES / 'sbu_tiny'}",
    "vg": f"vg:{FIXTURES / 'vg_tiny'}",
    "csv": f"csv:{FIXTURES / 'csv_tiny'}",
    "karpathy": f"karpathy:{FIXTURES / 'karpathy_tiny' / 'dataset_coco.json'}",
    "manifest": _manifest,
    "parquet": f"parquet:{FIXTURES / 'parquet_tiny'}",
    "wds": f"wds:{FIXTURES / 'wds_tiny'}",
    "multi30k": f"multi30k:{FIXTURES / 'multi30k_tiny'}:val?lang=de",
    "xtd": f"xtd:{FIXTURES / 'xtd_tiny'}?lang=fr",
    **{s: f"{s}:{VIDEO_FIXTURES / s}"
       for s in ("activitynet", "didemo", "lsmdc", "msrvtt", "msvd", "tvr", "vatex", "youcook2")},
    "recipe1m": f"recipe1m:{FIXTURES / 'side_text' / 'recipe1m'}",
    "product1m": f"product1m:{FIXTURES / 'side_text' / 'product1m'}",
    "amazon": f"amazon:{FIXTURES / 'side_text' / 'amazon' / 'meta_Tiny.jsonl'}",
    "livebot": f"livebot:{FIXTURES / 'side_text' / 'livebot'}",
    "howto100m": f"howto100m:{FIXTURES / 'side_text' / 'howto100m' / 'caption.json'}",
    "vggsound": f"vggsound:{FIXTURES / 'side_text' / 'vggsound' / 'vggsound.csv'}",
}


@pytest.mark.parametrize("scheme", DATASETS.names())
def test_dataset_loader_contract(scheme, tmp_path):
    from xmr.data import RetrievalDataset, load_dataset

    if scheme not in DATASET_FIXTURES:
        _missing("dataset scheme", scheme, "DATASET_FIXTURES")
    spec = DATASET_FIXTURES[scheme]
    ds = load_dataset(spec(tmp_path) if callable(spec) else spec)
    assert isinstance(ds, RetrievalDataset) and len(ds) >= 1 and ds.spec.startswith(f"{scheme}:")
    t2i, off = ds.text_to_item, ds.text_offsets
    assert t2i.shape == (ds.num_texts,) and t2i.dtype == np.int64 and off.shape == (len(ds) + 1,)
    assert off[0] == 0 and off[-1] == ds.num_texts and (np.diff(off) >= 1).all()  # every item has a caption
    np.testing.assert_array_equal(t2i, np.repeat(np.arange(len(ds)), np.diff(off)))
    assert all(isinstance(t, str) and t.strip() for t in ds.texts)
    assert all(Path(m).is_absolute() for m in ds.media)
    again = load_dataset(ds.spec)  # the canonical spec rebuilds the same dataset
    assert again.texts == ds.texts and again.media == ds.media
    _json(list(ds.source_files))


# ================================================================================================== re-rankers


def _xattn(request, tmp):
    from xmr.data import load_dataset
    from xmr.rerank import train_cross_matcher

    ds = load_dataset(f"coco:{FIXTURES / 'coco_tiny'}")
    rr = train_cross_matcher(request.getfixturevalue("tiny_encoder"), ds.texts, ds.media, ds.text_to_item,
                             negatives=1, hard_k=2, epochs=1, batch_size=16, seed=0)
    rr.save(tmp / "matcher")
    return tmp / "matcher"


def _blip(request, tmp):
    from test_rerank import _tiny_blip  # the random BLIP ITM checkpoint test_rerank builds

    return _tiny_blip(tmp / "blip")


def _token_matcher(make):
    """A builder that trains the matcher ``make(width)`` for one epoch on coco_tiny and saves it."""

    def build(request, tmp):
        from xmr.data import load_dataset
        from xmr.rerank import MatcherTrainConfig, train_matcher

        enc = request.getfixturevalue("tiny_encoder")
        ds = load_dataset(f"coco:{FIXTURES / 'coco_tiny'}")
        rr = train_matcher(make(enc.token_width), enc, ds.texts, ds.media, ds.text_to_item,
                           MatcherTrainConfig(negatives=1, hard_k=2, epochs=1, batch_size=16))
        rr.save(tmp / "matcher")
        return tmp / "matcher"

    return build


def _imram(width):
    from xmr.rerank import IMRAMConfig, IMRAMMatcher

    return IMRAMMatcher(IMRAMConfig(width=width, dim=16, steps=2))


def _wcgl(width):
    from xmr.rerank import WCGLConfig, WCGLMatcher

    return WCGLMatcher(WCGLConfig(width=width, dim=16, keys=4, sinkhorn_iters=10, direct_weight=0.5))


#: re-ranker name -> function (request, tmp dir) -> ARG of the spec NAME:ARG
RERANKER_BUILDERS = {"xattn": _xattn, "hf": _blip, "imram": _token_matcher(_imram), "wcgl": _token_matcher(_wcgl)}


@pytest.mark.parametrize("name", RERANKERS.names())
def test_reranker_contract(name, request, tmp_path):
    from xmr.rerank import CrossEncoder, create_reranker, rerank_dense

    if name not in RERANKER_BUILDERS:
        _missing("re-ranker", name, "RERANKER_BUILDERS")
    rr = create_reranker(f"{name}:{RERANKER_BUILDERS[name](request, tmp_path)}")
    assert isinstance(rr, CrossEncoder) and rr.spec.startswith(f"{name}:")
    _json(rr.describe())
    texts = ["a cat", "a rocket launch", "coffee"]
    pairs = np.array([[t, i] for t in range(3) for i in range(3)])
    s = rr.score(texts, IMAGES, pairs)
    assert s.shape == (9,) and s.dtype == np.float32 and np.isfinite(s).all()
    rev = rr.score(texts, IMAGES, pairs[::-1], batch_size=2)  # another order and batching: the same scores
    np.testing.assert_allclose(rev[::-1], s, rtol=1e-4, atol=1e-4)
    sims = np.random.default_rng(0).uniform(size=(3, 3))
    before = sims.copy()
    out, info = rerank_dense(sims, texts, IMAGES, rr, k=2)
    np.testing.assert_array_equal(sims, before)
    assert out.shape == sims.shape and np.isfinite(out).all() and info["pairs_scored"] == 6
    order = np.argsort(-out, axis=1)
    assert all(set(order[r, :2]) == set(np.argsort(-sims[r])[:2]) for r in range(3))  # only the top-2 re-ordered


# =========================================================================================== evaluation protocols


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_protocol_contract(name):
    from xmr.eval import evaluate_sims

    t2i = np.array([0, 0, 1, 2, 3, 3])  # items with one and with several texts
    perfect = np.full((6, 4), -1.0)
    perfect[np.arange(6), t2i] = 1.0 - 0.01 * np.arange(6)  # no ties (protocols differ on ties, not on this)
    res = evaluate_sims(perfect, t2i, name)
    assert res["t2i"]["R@1"] == 100.0 and res["i2t"]["R@1"] == 100.0
    sims = np.random.default_rng(0).uniform(size=(6, 4))
    before = sims.copy()
    res = evaluate_sims(sims, t2i, name)
    np.testing.assert_array_equal(sims, before)
    _json(res)
    for m in res.values():
        assert all(0.0 <= m[k] <= 100.0 for k in m if k.startswith("R@")) and m["MdR"] >= 1 and m["MnR"] >= 1
