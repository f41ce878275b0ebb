"""Plugins (xmr.plugins): components from other distributions through ``xmr.plugins`` entry points. A fake installed
distribution (a ``*.dist-info`` folder with ``entry_points.txt`` on sys.path) stands for ``pip install``; a broken
plugin and one that tries to replace a built-in are refused with their reason, and xmr keeps working."""
from __future__ import annotations

import importlib
import json
import sys

import pytest
from conftest import run_cli

from xmr import plugins, registries

# the greedy plugin's re-registration of "tiny" warns (Registry.add) before the loader refuses and rolls it back
pytestmark = pytest.mark.filterwarnings("ignore:encoder 'tiny' registered twice")

GOOD = '''
def register(registries):
    def make(arg, device=None):
        from xmr.encoders import create_encoder
        return create_encoder("tiny", device=device)
    registries.ENCODERS.register("fakeplug-enc", help="a plugin's encoder")(make)
    registries.EXPERT_FUSERS.register("fakeplug-fuser", help="a plugin's fuser")(object)
'''
BROKEN = "import no_such_module_xmr_test\n"
GREEDY = '''
def register(registries):
    registries.ENCODERS.register("fakeplug-extra", help="registered before the bad one")(object)
    registries.ENCODERS.register("tiny", help="replaces a built-in")(object)
'''


def _dist(root, name, module_src, entry):
    (root / f"{name}.py").write_text(module_src)
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[xmr.plugins]\n{entry} = {name}:register\n")


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    _dist(tmp_path, "fakeplug_good", GOOD, "good")
    _dist(tmp_path, "fakeplug_broken", BROKEN, "broken")
    _dist(tmp_path, "fakeplug_greedy", GREEDY, "greedy")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("XMR_NO_PLUGINS", raising=False)
    importlib.invalidate_caches()
    registries.load_all()
    plugins.load_plugins(force=True)
    yield
    plugins.unload_plugins()
    for m in ("fakeplug_good", "fakeplug_broken", "fakeplug_greedy"):
        sys.modules.pop(m, None)


def test_plugins_register_components_and_bad_ones_are_refused(fake_plugins):
    report = {p["name"]: p for p in plugins.plugin_report()}
    assert report["good"]["components"] == ["encoder:fakeplug-enc", "expert_fuser:fakeplug-fuser"]
    assert report["good"]["error"] is None and report["good"]["dist"] == "fakeplug_good 0.1"
    assert "ModuleNotFoundError" in report["broken"]["error"] and "no_such_module_xmr_test" in report["broken"]["error"]
    assert "replaces xmr's own encoder 'tiny'" in report["greedy"]["error"]
    # the refused plugin's components are rolled back, the built-in is intact
    assert "fakeplug-extra" not in registries.ENCODERS and registries.ENCODERS.get("tiny") is not object
    from xmr.encoders import create_encoder

    enc = create_encoder("fakeplug-enc")
    assert enc.encode_text(["a cat"]).shape[0] == 1
    assert plugins.origin("encoder", "fakeplug-enc") == "good" and plugins.origin("encoder", "tiny") is None


def test_xmr_models_lists_plugins_and_their_errors(fake_plugins, capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert "fakeplug-enc (plugin good): a plugin's encoder" in out
    assert "broken (fakeplug_broken:register, fakeplug_broken 0.1): NOT LOADED: ModuleNotFoundError" in out
    code, out, _ = run_cli(capsys, "models", "--json")
    d = json.loads(out)
    assert {p["name"] for p in d["plugins"]} == {"good", "broken", "greedy"}
    assert any(e["name"] == "tiny" and e["plugin"] is None for e in d["encoders"])


def test_plugins_can_be_turned_off(fake_plugins, monkeypatch):
    monkeypatch.setenv("XMR_NO_PLUGINS", "1")
    assert plugins.load_plugins(force=True) == [] and "fakeplug-enc" not in registries.ENCODERS
