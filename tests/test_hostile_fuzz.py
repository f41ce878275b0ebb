"""Property-based fuzzing (Hypothesis) of what xmr reads from strangers: JSON-lines manifests, checkpoint
``config.json`` files and file names. The property each time: a clear xmr error (ConfigError /
ModelUnavailableError) or a correct result, never another exception, a hang or a lost file."""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from xmr.errors import ConfigError, ModelUnavailableError

_FUZZ = settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4) |
                           st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=12)

manifest_keys = st.sampled_from(["media", "image", "video", "path", "caption", "captions", "split", "id", "start",
                                 "end", "other"])
manifest_lines = st.one_of(
    st.dictionaries(manifest_keys, json_values, max_size=6).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=60),  # anything at all, invalid UTF-8 included
    st.integers(1, 3000).map(lambda n: b'{"media": "a.jpg", "caption": ' + b"[" * n + b"]" * n + b"}"),
)


@_FUZZ
@given(lines=st.lists(manifest_lines, min_size=1, max_size=6))
def test_manifest_fuzz(lines):
    from xmr.data.manifest import read_manifest

    d = Path(tempfile.mkdtemp())
    try:
        (d / "m.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        try:
            items = read_manifest(d / "m.jsonl")
        except ConfigError as e:
            assert "m.jsonl" in str(e) and "\n" not in str(e).strip()
            return
        for it in items:  # what is accepted is well formed
            assert os.path.isabs(it.media) and it.captions and all(isinstance(c, str) and c for c in it.captions)
    finally:
        shutil.rmtree(d)


tiny_fields = st.sampled_from(["image_size", "patch_size", "width", "layers", "heads", "mlp_ratio", "context_length",
                               "dim", "init_logit_scale", "mean", "std", "seed", "unknown"])
head_fields = st.sampled_from(["head", "dim", "max_frames", "num_frames", "layers", "heads", "mlp_ratio", "seed",
                               "init_logit_scale", "training"])
config_values = json_values | st.integers(-10, 10) | st.sampled_from([2**17, 2**31, 10**12, 64, 4, 1, 0, -1, 2.5,
                                                                      "64", "seqtransf", [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from xmr.encoders.tiny import TinyConfig, TinyDualEncoder
    from xmr.heads import create_head

    d = tmp_path_factory.mktemp("ckpts")
    TinyDualEncoder(TinyConfig()).save(d / "tiny")
    create_head("seqtransf", dim=64).save(d / "head")
    return d


def _fuzz_config(src: Path, changes: dict, raw: bytes | None) -> Path:
    d = Path(tempfile.mkdtemp())
    shutil.copy(src / "model.safetensors", d / "model.safetensors")
    if raw is not None:
        (d / "config.json").write_bytes(raw)
    else:
        cfg = json.loads((src / "config.json").read_text())
        cfg.update(changes)
        (d / "config.json").write_text(json.dumps(cfg))
    return d


@_FUZZ
@given(changes=st.dictionaries(tiny_fields, config_values, min_size=1, max_size=3),
       raw=st.none() | st.binary(max_size=40) | st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n))
def test_tiny_checkpoint_config_fuzz(saved, changes, raw):
    from xmr.encoders.tiny import TinyDualEncoder

    d = _fuzz_config(saved / "tiny", changes, raw)
    try:
        TinyDualEncoder.load(d)  # loads only when the config still fits the weights
    except (ConfigError, ModelUnavailableError) as e:
        assert str(e) and "\n" not in str(e).strip()
    finally:
        shutil.rmtree(d)


@_FUZZ
@given(changes=st.dictionaries(head_fields, config_values, min_size=1, max_size=3))
def test_video_head_config_fuzz(saved, changes):
    from xmr.heads import load_head

    d = _fuzz_config(saved / "head", changes, None)
    try:
        load_head(d)
    except (ConfigError, ModelUnavailableError) as e:
        assert str(e) and "\n" not in str(e).strip()
    finally:
        shutil.rmtree(d)


def _png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# file-name bytes: anything a POSIX file system takes (no NUL, no '/'), ending in an image extension
name_bytes = st.binary(min_size=1, max_size=20).map(lambda b: b.replace(b"\0", b"_").replace(b"/", b"_")
                                                   ).filter(lambda b: not b.startswith(b"."))


@settings(max_examples=15, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(names=st.lists(name_bytes, min_size=1, max_size=5, unique=True), broken=st.lists(st.booleans(), min_size=5,
                                                                                        max_size=5))
def test_file_name_fuzz(tiny_encoder, names, broken):
    from xmr.index import IndexStore, index_folder

    base = Path(tempfile.mkdtemp())
    try:
        root = os.fsencode(str(base / "photos"))
        os.mkdir(root)
        good = set()
        for i, n in enumerate(names):
            p = root + b"/" + n + b".png"
            with open(p, "wb") as f:
                f.write(b"not an image" if broken[i] else _png_bytes(i))
            if not broken[i]:
                good.add(os.fsdecode(p))
        idx = base / "idx"
        rep = index_folder(os.fsdecode(root), idx, tiny_encoder, show_progress=False)
        assert rep.total == len(good) and len(rep.skipped) == len(names) - len(good)
        with IndexStore(idx, readonly=True) as store:
            assert {r.path for r in store.get_items(range(1, 50)).values()} == good
        again = index_folder(os.fsdecode(root), idx, tiny_encoder, show_progress=False)
        assert (again.added, again.removed, again.total) == (0, 0, len(good))
    finally:
        shutil.rmtree(base)
