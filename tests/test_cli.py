"""The command line as a user runs it: JSON shapes, clear one-line errors (never a traceback)."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import FIXTURES, SAMPLES, run_cli
from xmr.cli import main


run = run_cli  # (code, out, err) of xmr ARGV


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    photos = tmp_path_factory.mktemp("photos")
    for f in ("chelsea.png", "coffee.png", "rocket.jpg", "horse.png"):
        shutil.copy(SAMPLES / f, photos / f)
    shutil.copy(FIXTURES / "truncated.jpg", photos / "broken.jpg")
    index = tmp_path_factory.mktemp("idx") / "index"
    assert main(["-q", "index", str(photos), "--index", str(index)]) == 0
    return photos, index


def test_search_json(built, capsys):
    _, index = built
    code, out, _ = run(capsys, "-q", "search", "a facial photo of a tabby cat", "--index", str(index), "--k", "2", "--json")
    data = json.loads(out)
    assert code == 0 and len(data["results"]) == 2
    assert data["results"][0]["path"].endswith("chelsea.png") and isinstance(data["results"][0]["score"], float)


def test_search_by_image_text_output(built, capsys):
    _, index = built
    code, out, _ = run(capsys, "-q", "search", "--image", str(SAMPLES / "rocket.jpg"), "--index", str(index), "-k", "1")
    assert code == 0 and "rocket.jpg" in out.splitlines()[0]


def test_info_lists_skipped(built, capsys):
    _, index = built
    code, out, _ = run(capsys, "info", "--index", str(index), "--json")
    info = json.loads(out)
    assert code == 0 and info["items"] == 4 and info["model"] == "concept"
    assert [s["path"].rsplit("/", 1)[1] for s in info["skipped"]] == ["broken.jpg"]


def test_reindex_reports_nothing_new(built, capsys):
    photos, index = built
    code, out, _ = run(capsys, "-q", "index", str(photos), "--index", str(index), "--json")
    rep = json.loads(out)
    assert code == 0 and rep["added"] == 0 and rep["unchanged"] == 4 and len(rep["skipped"]) == 1


def test_model_mismatch_refused(built, capsys):
    photos, index = built
    code, _, err = run(capsys, "-q", "index", str(photos), "--index", str(index), "--model", "tiny")
    assert code == 2 and "built with model 'concept'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "cat", "--index", "/nonexistent/idx"], "no index at"),
        (["index", "/nonexistent/dir", "--model", "tiny"], "not a folder"),
        (["eval", "--dataset", "nope:xyz", "--model", "tiny"], "unknown"),
        (["search", "--index", "/tmp"], "give a text query"),
        (["index", str(SAMPLES), "--model", "hf:/nonexistent/model-dir"], "hf"),
        (["index", str(SAMPLES), "--model", "banana"], "Available"),
    ],
)
def test_errors_are_one_line_messages(capsys, argv, message):
    code, _, err = run(capsys, "-q", *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_eval_json_on_coco_fixture(capsys):
    code, out, _ = run(capsys, "-q", "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--json")
    res = json.loads(out)
    assert code == 0
    assert set(res["t2i"]) >= {"R@1", "R@5", "R@10", "R@50", "MdR", "MnR"} and "i2t" in res
    fp = res["fingerprint"]
    assert fp["protocol"] == "standard" and fp["num_gallery_items"] == 4 and fp["model"]["spec"] == "concept"
    assert all(len(h) == 64 for h in fp["dataset_files"].values()) and fp["packages"]["numpy"]


def test_eval_table(capsys):
    code, out, _ = run(capsys, "-q", "eval", "--dataset", f"coco:{FIXTURES / 'coco_tiny'}", "--model", "tiny", "--protocol", "vse")
    assert code == 0 and "t2i" in out and "protocol vse" in out
