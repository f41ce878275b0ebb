"""The example plugin examples/xmr-codecmr: C functions compiled with gcc and disassembled with objdump, the token
features of both sides, and the package loaded through its ``xmr.plugins`` entry point (a fake installed
distribution pointing at the example's source, instead of a slow pip install into a temporary venv)."""
from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xmr import plugins
from xmr.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "xmr-codecmr"


@pytest.fixture
def codecmr(tmp_path, monkeypatch):
    info = tmp_path / "xmr_codecmr-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xmr-codecmr\nVersion: 0.1.0\n")
    declared = (EXAMPLE / "pyproject.toml").read_text().split('[project.entry-points."xmr.plugins"]')[1]
    line = declared.strip().splitlines()[0]  # codecmr = "xmr_codecmr:register" (the TOML line of the package)
    (info / "entry_points.txt").write_text("[xmr.plugins]\n" + line.replace('"', "") + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.delenv("XMR_NO_PLUGINS", raising=False)
    importlib.invalidate_caches()
    plugins.load_plugins(force=True)
    yield
    plugins.unload_plugins()
    for m in [m for m in sys.modules if m.startswith("xmr_codecmr")]:
        sys.modules.pop(m)


def test_binary_tokens_hand_case(codecmr):
    from xmr_codecmr.model import binary_tokens, source_tokens

    toks = binary_tokens([("add", "eax,0x25"), ("mov", "eax,DWORD PTR [rbp-0x14]"), ("jmp", "20")])
    assert toks == ["add", "mov", "jmp", "add mov", "mov jmp", "reg", "imm:37", "imm", "add:reg", "add:imm",
                    "reg", "mem", "imm:20", "mov:reg", "mov:mem"]
    assert "num:37" in source_tokens("s = s + 37;") and "s +" in source_tokens("s = s + 37;")


@pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("objdump")), reason="needs gcc and objdump")
def test_compiled_pairs_and_the_plugin_encoder(codecmr, tmp_path):
    from xmr_codecmr.data import make_pairs
    from xmr_codecmr.model import CodeCmrConfig, save, train

    pairs = make_pairs(12, seed=0)
    assert len(pairs) == 12
    for p in pairs:
        assert p.source.startswith("int func(") and p.name not in p.source.split("(")[0]
        assert p.binaries["O0"] and p.binaries["O2"] and all("<" not in ops for _, ops in p.binaries["O2"])
        assert p.binaries["O0"] != p.binaries["O2"]
    rep = {r["name"]: r for r in plugins.plugin_report()}
    assert rep["codecmr"]["error"] is None and rep["codecmr"]["components"] == ["encoder:codecmr"]
    from xmr.encoders import create_encoder

    with pytest.raises(ConfigError, match="codecmr:DIR"):
        create_encoder("codecmr")
    model, losses = train(pairs, ("O0", "O2"), CodeCmrConfig(hidden=16, dim=8), epochs=3, batch=6)
    assert np.isfinite(losses).all()
    save(model, tmp_path / "m")
    enc = create_encoder(f"codecmr:{tmp_path / 'm'}")
    e = enc.encode_text([p.source for p in pairs[:3]])
    assert e.shape == (3, 8) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    b = enc.encode_binaries([p.binaries["O2"] for p in pairs[:3]])
    assert b.shape == (3, 8) and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)
    with pytest.raises(ConfigError, match="no image tower"):
        enc.encode_images([Image.new("RGB", (8, 8))])
