"""xmr.checkpoint: the one ``config.json`` + ``model.safetensors`` layout of the tiny encoder, video heads, the learned
query weighting and the cross-attention matcher.

The folders these components wrote before xmr.checkpoint existed are reproduced here byte for byte (the writer
below is the code each of them had), so: old folders still load, new folders are the same files, and every
component reports a broken folder with the same error classes (missing -> ModelUnavailableError naming the file,
bad config.json -> ConfigError, weights that do not fit -> ModelUnavailableError)."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from xmr.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, load_state, save_checkpoint
from xmr.errors import ConfigError, ModelUnavailableError


def _old_writer(d, body: dict, state: dict, metadata: dict) -> None:
    """What TinyDualEncoder.save / VideoHead.save / QueryWeighting.save / CrossAttentionMatcher.save wrote."""
    from safetensors.torch import save_file

    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(body, indent=2) + "\n")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(d / "model.safetensors"),
              metadata={"format": "pt", **metadata})


def _perturb(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


class _Case:
    """One component: build (perturbed), the old on-disk form, save / load with the current code, and an output."""

    label = ""

    def build(self): ...
    def old(self, obj, d): ...
    def save(self, obj, d): ...
    def load(self, d): ...
    def output(self, obj): ...
    def module(self, obj): return obj


class _Tiny(_Case):
    label = "tiny:"

    def build(self):
        from xmr.encoders.tiny import TinyConfig, TinyDualEncoder

        m = TinyDualEncoder(TinyConfig(width=32, heads=2, layers=1, dim=16, seed=1))
        _perturb(m)
        return m.eval()

    def old(self, m, d):
        _old_writer(d, {"model": "xmr-tiny", **asdict(m.config)}, m.state_dict(), {"model": "xmr-tiny"})

    def save(self, m, d):
        return m.save(d)

    def load(self, d):
        from xmr.encoders.tiny import TinyDualEncoder

        return TinyDualEncoder.load(d).eval()

    def output(self, m):
        from xmr.encoders.tiny import tokenize

        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            img, txt, _ = m(torch.randn(2, 3, 32, 32, generator=g), tokenize(["a cat", "a dog"], 32))
        return torch.cat([img, txt])


class _Head(_Case):
    label = "video head "

    def build(self):
        from xmr.heads import create_head

        h = create_head("seqtransf", dim=16, heads=2, seed=1)
        _perturb(h)
        return h.eval()

    def old(self, h, d):
        _old_writer(d, {"model": "xmr-video-head", "head": h.name, **asdict(h.config)}, h.state_dict(),
                    {"model": "xmr-video-head", "head": h.name})

    def save(self, h, d):
        return h.save(d)

    def load(self, d):
        from xmr.heads import load_head

        return load_head(d)

    def output(self, h):
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return h.similarity(torch.randn(3, 16, generator=g), torch.randn(4, 5, 16, generator=g))


class _Learned(_Case):
    label = "learned:"

    def build(self):
        from xmr.multiquery import QueryWeighting, QueryWeightingConfig

        q = QueryWeighting(QueryWeightingConfig(dim=8, encoder="tiny"), {"n": 2, "epochs": 3})
        _perturb(q.module)
        return q

    def old(self, q, d):
        _old_writer(d, {"model": "xmr-query-weighting", **asdict(q.config), "training": q.info}, q.module.state_dict(),
                    {"model": "xmr-query-weighting"})

    def save(self, q, d):
        return q.save(d)

    def load(self, d):
        from xmr.multiquery import QueryWeighting

        q = QueryWeighting.load(d)
        assert q.info == {"n": 2, "epochs": 3}
        return q

    def output(self, q):
        g = torch.Generator().manual_seed(0)
        return torch.as_tensor(q.fuse(torch.nn.functional.normalize(torch.randn(2, 3, 8, generator=g), dim=-1).numpy()))

    def module(self, q):
        return q.module


class _Xattn(_Case):
    label = "xattn:"

    def build(self):
        from xmr.rerank import CrossAttentionMatcher, CrossMatcherConfig

        m = CrossAttentionMatcher(CrossMatcherConfig(width=16, heads=2, seed=1))
        _perturb(m)
        m.eval()
        m.info = {"epochs": 1}
        return m

    def old(self, m, d):
        _old_writer(d, {"model": "xmr-xattn-matcher", **asdict(m.config), "training": m.info}, m.state_dict(),
                    {"model": "xmr-xattn-matcher"})

    def save(self, m, d):
        return m.save(d, m.info)

    def load(self, d):
        from xmr.rerank import CrossAttentionMatcher

        m, info = CrossAttentionMatcher.load(d)
        assert info == {"epochs": 1} and not m.training
        return m

    def output(self, m):
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return m(torch.randn(2, 4, 16, generator=g), torch.ones(2, 4, dtype=torch.bool), torch.randn(2, 5, 16, generator=g))


CASES = {"tiny": _Tiny(), "head": _Head(), "learned": _Learned(), "xattn": _Xattn()}


@pytest.mark.parametrize("case", CASES)
def test_old_folders_load_and_new_folders_are_the_same_files(case, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    c = CASES[case]
    obj = c.build()
    c.old(obj, tmp_path / "old")
    assert torch.equal(c.output(c.load(tmp_path / "old")), c.output(obj))
    c.save(obj, tmp_path / "new")
    assert (tmp_path / "new" / CONFIG_FILE).read_bytes() == (tmp_path / "old" / CONFIG_FILE).read_bytes()
    old, new = (load_file(str(tmp_path / v / WEIGHTS_FILE)) for v in ("old", "new"))
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
    metas = [safe_open(str(tmp_path / v / WEIGHTS_FILE), "pt").metadata() for v in ("old", "new")]
    assert metas[0] == metas[1]  # the key order of the header may differ (safetensors does not keep it)


@pytest.mark.parametrize("case", CASES)
def test_every_component_reports_broken_folders_alike(case, tmp_path):
    c = CASES[case]
    obj = c.build()
    with pytest.raises(ModelUnavailableError, match=f"{c.label}.*directory not found"):
        c.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="config.json is missing"):
        c.load(tmp_path / "empty")
    d = c.save(obj, tmp_path / "ok")
    (d / WEIGHTS_FILE).rename(tmp_path / "weights")
    with pytest.raises(ModelUnavailableError, match="model.safetensors is missing"):
        c.load(d)
    (tmp_path / "weights").rename(d / WEIGHTS_FILE)
    body = json.loads((d / CONFIG_FILE).read_text())
    (d / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable config.json"):
        c.load(d)
    for bad in ([1, 2], {"model": "xmr-something-else"}, {k: v for k, v in body.items() if k != "model"}):
        (d / CONFIG_FILE).write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=f"{c.label}.*config.json is not a"):
            c.load(d)
    (d / CONFIG_FILE).write_text(json.dumps(body))
    c.load(d)
    (d / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ModelUnavailableError, match="does not fit config.json or is corrupt"):
        c.load(d)
    c.save(obj, d)
    from safetensors.torch import load_file, save_file

    state = load_file(str(d / WEIGHTS_FILE))
    save_file({k: v for k, v in list(state.items())[1:]}, str(d / WEIGHTS_FILE))  # one tensor missing
    with pytest.raises(ModelUnavailableError, match="does not fit"):
        c.load(d)


def test_save_checkpoint_layout_and_load_state(tmp_path):
    m = torch.nn.Linear(3, 2)
    d = save_checkpoint(tmp_path / "a" / "b", "xmr-test", {"dim": 3, "t": [1, 2]}, m, extra={"training": {"x": 1}},
                        metadata={"head": "h"})
    assert d == tmp_path / "a" / "b"
    assert (d / CONFIG_FILE).read_text() == json.dumps(
        {"model": "xmr-test", "dim": 3, "t": [1, 2], "training": {"x": 1}}, indent=2) + "\n"
    ckpt = load_checkpoint(d, "xmr-test", "test:X")
    assert ckpt.config == {"dim": 3, "t": [1, 2], "training": {"x": 1}} and ckpt.directory == d
    again = ckpt.load_into(torch.nn.Linear(3, 2))
    assert torch.equal(again.weight, m.weight) and torch.equal(again.bias, m.bias)
    with pytest.raises(ModelUnavailableError, match=r"^test:X: model.safetensors does not fit"):
        ckpt.load_into(torch.nn.Linear(4, 2))
    with pytest.raises(ModelUnavailableError, match="^lbl: model.safetensors does not fit"):
        load_state(torch.nn.Linear(3, 2), {"weight": m.weight}, "lbl")
    with pytest.raises(ConfigError, match="is not a xmr-other config"):
        load_checkpoint(d, "xmr-other", "test:X")
    with pytest.raises(ModelUnavailableError, match="directory not found; make one"):
        load_checkpoint(tmp_path / "nope", "xmr-test", "test:X", hint="make one")
