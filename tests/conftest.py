"""Shared fixtures. Every test runs offline with its own XMR_HOME (indexes) so user files are never touched; the
derived-data cache (XMR_CACHE, concept class embeddings) is shared across tests to keep the suite fast."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "xmr" / "assets" / "samples"
FIXTURES = REPO / "tests" / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"

requires_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real benchmark data not present at {SHARED_DATA} (only on developer machines)"
)


def run_cli(capsys, *argv):
    """``xmr ARGV`` in this process -> (exit code, stdout, stderr)."""
    from xmr.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XMR_HOME", str(tmp_path_factory.mktemp("xmr_home")))
    monkeypatch.delenv("XMR_INDEX", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def concept_encoder():
    """The default model, loaded once per session (tests must not mutate it)."""
    from xmr import create_encoder

    return create_encoder("concept")


@pytest.fixture(scope="session")
def tiny_encoder():
    from xmr import create_encoder

    return create_encoder("tiny")


@pytest.fixture
def sample_dir(tmp_path) -> Path:
    """A writable copy of the bundled sample images."""
    d = tmp_path / "photos"
    shutil.copytree(SAMPLES, d, ignore=shutil.ignore_patterns("*.json", "*.md"))
    return d


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Small models run much faster on one thread on a busy 2-core machine; restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
