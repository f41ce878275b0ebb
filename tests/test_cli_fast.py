"""The first hour of a new user: bad arguments are refused before any model loads, a re-index with nothing new does
not load the model, progress shows without a terminal, ``-v`` shows where a search's time goes, and ``tiny``'s
random-initialisation warning appears only when a random model is built (once)."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

import xmr.encoders
from conftest import SAMPLES, run_cli
from xmr._progress import LineProgress, progress
from xmr.cli import main


run = run_cli  # (code, out, err) of xmr ARGV


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    photos = tmp_path_factory.mktemp("photos")
    for f in ("chelsea.png", "coffee.png", "rocket.jpg", "horse.png"):
        shutil.copy(SAMPLES / f, photos / f)
    index = tmp_path_factory.mktemp("idx") / "index"
    assert main(["-q", "index", str(photos), "--index", str(index)]) == 0
    return photos, index


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to create an encoder fails the test."""
    calls = []

    def refuse(*a, **k):
        calls.append(a)
        raise AssertionError(f"an encoder was created: {a}")

    monkeypatch.setattr(xmr.encoders, "create_encoder", refuse)
    return calls


def _search_cases(index, tmp):
    bad_npy = tmp / "bad.npy"
    bad_npy.write_text("not an array")
    return [
        (["search", "", "--index", index], "empty text query"),
        (["search", "   ", "--index", index], "empty text query"),
        (["search", "cat", "--k", "0", "--index", index], "between 1 and 10000"),
        (["search", "cat", "--k", "10001", "--index", index], "between 1 and 10000"),
        (["search", "cat", "--candidates", "0", "--rerank", "xattn:/x", "--index", index], "--candidates"),
        (["search", "--image", str(tmp / "missing.png"), "--index", index], "no such file"),
        (["search", "--image", str(tmp), "--index", index], "not a file"),
        (["search", "--vector", str(tmp / "missing.npy"), "--index", index], "no such file"),
        (["search", "--vector", str(bad_npy), "--index", index], "not a readable .npy"),
        (["search", "cat", "--index", str(tmp / "no_index")], "no index at"),
        (["search", "--index", index], "give a text query"),
        (["search", "cat", "--not", "", "--index", index], "empty text query"),
    ]


def test_search_refusals_come_before_the_model(built, no_model, capsys, tmp_path):
    _, index = built
    for argv, message in _search_cases(str(index), tmp_path):
        code, _, err = run(capsys, "-q", *argv)
        assert code == 2 and message in err and err.startswith("xmr: error: "), (argv, err)
        assert len(err.strip().splitlines()) == 1
    assert not no_model


def test_index_refusals_come_before_the_model(no_model, capsys, tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("x")
    cases = [
        (["index", str(tmp_path / "nope")], "not a folder"),
        (["index", str(f)], "not a folder"),
        (["index", str(SAMPLES), "--segment", "0"], "invalid video indexing settings"),
        (["index", str(SAMPLES), "--video-max-frames", "0"], "--video-max-frames"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, "-q", *argv, "--index", str(tmp_path / "idx"))
        assert code == 2 and message in err and err.startswith("xmr: error: "), (argv, err)
    assert not no_model


def test_index_model_mismatch_refused_without_loading(built, no_model, capsys):
    photos, index = built
    code, _, err = run(capsys, "-q", "index", str(photos), "--index", str(index), "--model", "tiny")
    assert code == 2 and "built with model 'concept'" in err and not no_model


def test_eval_refusals_come_before_the_model(no_model, capsys):
    from conftest import FIXTURES

    ds = f"coco:{FIXTURES / 'coco_tiny'}"
    cases = [
        (["eval", "--dataset", ds, "--protocol", "nope"], "unknown protocol"),
        (["eval", "--dataset", ds, "--frames", "0"], "--frames"),
        (["eval", "--dataset", ds, "--limit", "0"], "--limit"),
        (["eval", "--dataset", ds, "--candidates", "0"], "--candidates"),
        (["eval", "--dataset", ds, "--rerank", "xattn:/x", "--rerank-k", "0"], "--rerank-k"),
        (["eval", "--dataset", "nope:xyz"], "unknown"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, "-q", *argv)
        assert code == 2 and message in err, (argv, err)
    assert not no_model


def test_noop_reindex_does_not_load_the_model(built, no_model, capsys):
    photos, index = built
    code, out, _ = run(capsys, "-q", "index", str(photos), "--index", str(index))
    assert code == 0 and "4 unchanged" in out and "model 'concept'" in out
    assert not no_model


def test_index_folder_factory_called_only_when_needed(tmp_path, concept_encoder):
    from xmr.index import index_folder

    photos = tmp_path / "p"
    photos.mkdir()
    shutil.copy(SAMPLES / "horse.png", photos / "horse.png")
    calls = []

    def factory():
        calls.append(1)
        return concept_encoder

    idx = tmp_path / "idx"
    rep = index_folder(photos, idx, factory, spec="concept", show_progress=False)
    assert rep.added == 1 and calls == [1]  # a new index: bound with the model's dim
    rep = index_folder(photos, idx, factory, spec="concept", show_progress=False)
    assert rep.unchanged == 1 and calls == [1]  # nothing to encode: never created
    shutil.copy(SAMPLES / "rocket.jpg", photos / "rocket.jpg")
    rep = index_folder(photos, idx, factory, spec="concept", show_progress=False)
    assert rep.added == 1 and calls == [1, 1]
    with pytest.raises(xmr.errors.XmrIndexError, match="built with model 'concept'"):
        index_folder(photos, idx, lambda: pytest.fail("loaded"), spec="tiny", show_progress=False)
    with pytest.raises(TypeError, match="spec"):
        index_folder(photos, idx, factory, show_progress=False)


def test_line_progress_with_a_fake_clock():
    now = [100.0]
    lines = []

    class L:
        def info(self, fmt, *a):
            lines.append(fmt % a)

    p = LineProgress(900, "indexing", "file", interval=10, clock=lambda: now[0], logger=L())
    now[0] += 5
    p.update(20)
    assert lines == []  # not yet 10 s
    now[0] += 25
    p.update(100)
    assert lines == ["indexing: 120/900 files (13%), 4.0 files/s, eta 3 min"]
    now[0] += 1
    p.update(1)
    assert len(lines) == 1
    now[0] += 100
    p.update(779)
    p.close()
    p.close()
    assert len(lines) == 3 and lines[-1].startswith("indexing: 900/900 files (100%)") and "done in" in lines[-1]


def test_progress_picks_bar_or_lines():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress(3, "x", enabled=True, stream=io.StringIO()), LineProgress)
    assert not isinstance(progress(3, "x", enabled=False, stream=io.StringIO()), LineProgress)
    bar = progress(3, "x", enabled=True, stream=Tty())
    assert "tqdm" in type(bar).__name__
    bar.close()


def test_index_logs_progress_lines_without_a_terminal(tmp_path, capsys, caplog, monkeypatch):
    import xmr._progress as prog

    monkeypatch.setattr(prog, "DEFAULT_INTERVAL", 0.0)
    photos = tmp_path / "p"
    photos.mkdir()
    for f in ("horse.png", "rocket.jpg", "coffee.png"):
        shutil.copy(SAMPLES / f, photos / f)
    with caplog.at_level(logging.INFO, logger="xmr"):
        code, _, _ = run(capsys, "index", str(photos), "--index", str(tmp_path / "idx"), "--batch-size", "1")
    assert code == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "xmr.progress"]
    assert lines and lines[-1].startswith("indexing: 3/3 files (100%)"), lines
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="xmr"):
        code, _, _ = run(capsys, "-q", "index", str(photos), "--index", str(tmp_path / "idx2"))
    assert code == 0 and not [r for r in caplog.records if r.name == "xmr.progress"]


def test_eval_logs_progress_lines_without_a_terminal(capsys, caplog, monkeypatch):
    import xmr._progress as prog
    from conftest import FIXTURES

    monkeypatch.setattr(prog, "DEFAULT_INTERVAL", 0.0)
    with caplog.at_level(logging.INFO, logger="xmr"):
        code, _, _ = run(capsys, "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}:val2017", "--model", "tiny",
                         "--batch-size", "1")
    assert code == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "xmr.progress"]
    assert lines and lines[-1].startswith("encode images: 3/3 images (100%)"), lines


def test_verbose_search_prints_stage_timings(built, capsys):
    _, index = built
    code, out, err = run(capsys, "-v", "search", "a cat", "--index", str(index), "-k", "1")
    assert code == 0 and out.strip()
    line = [x for x in err.splitlines() if x.startswith("timing: ")]
    assert len(line) == 1 and "load model" in line[0] and "encode query" in line[0] and "first-stage" in line[0]
    code, _, err = run(capsys, "search", "a cat", "--index", str(index), "-k", "1")
    assert code == 0 and "timing:" not in err


def test_tiny_warns_once_per_command_and_only_for_random_init(tmp_path, capsys, caplog, monkeypatch):
    from xmr.cli._common import COMMANDS

    def twice(args):  # a command that builds random tiny models three times (index model, video base, re-ranker)
        xmr.encoders.create_encoder("tiny", device="cpu")
        xmr.encoders.create_encoder("tiny", device="cpu")
        xmr.encoders.create_encoder("video:tiny+mean", device="cpu")
        return 0

    monkeypatch.setitem(COMMANDS, "twice", (lambda p: None, twice, "test"))
    with caplog.at_level(logging.WARNING, logger="xmr.encoders.tiny"):
        assert main(["twice"]) == 0
        assert main(["twice"]) == 0  # each command (process) announces it once
    assert sum("meaningless until trained" in r.getMessage() for r in caplog.records) == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xmr.encoders.tiny"):  # outside the CLI: every random build says so
        enc = xmr.encoders.create_encoder("tiny", device="cpu")
    assert "meaningless until trained" in caplog.text
    enc.save(tmp_path / "trained")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xmr.encoders.tiny"):  # trained weights: never
        xmr.encoders.create_encoder(f"tiny:{tmp_path / 'trained'}", device="cpu")
        xmr.encoders.create_encoder(f"video:tiny:{tmp_path / 'trained'}+mean", device="cpu")
    assert "meaningless" not in caplog.text


def test_vector_query_still_works(built, capsys, tmp_path, concept_encoder):
    _, index = built
    v = concept_encoder.encode_text(["a cat"])[0]
    np.save(tmp_path / "q.npy", v)
    code, out, _ = run(capsys, "-q", "search", "--vector", str(tmp_path / "q.npy"), "--index", str(index), "-k", "1")
    assert code == 0 and out.strip()
