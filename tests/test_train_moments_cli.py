"""``xmr synth moments`` + ``xmr train-moments`` (SQuiDNet from the CLI): synthetic and TVR layouts, resume,
metrics.csv / curve.png, bad input, and the object / predicate rule."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import run_cli
from xmr.errors import ConfigError
from xmr.localize.squidnet import SQuiDNet
from xmr.train.moment_data import load_moment_npz, parse_query_words, save_moment_data, tvr_moment_data

TINY = ("--hidden", "8", "--batch-size", "16")


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from xmr.cli import main

    d = tmp_path_factory.mktemp("synth") / "m"
    assert main(["-q", "synth", "moments", "--out", str(d), "--n", "12"]) == 0
    return d


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_synth_writes_loadable_splits(synth_dir):
    train, test = load_moment_npz(synth_dir / "train.npz"), load_moment_npz(synth_dir / "test.npz")
    assert train.frames.shape[0] == 12 and test.frames.shape[0] == 6
    assert len(train.queries) == 24 and train.objects.dtype == np.int64
    assert json.loads((synth_dir / "synth.json").read_text())["train_queries"] == 24


def test_train_resume_and_config_mismatch(capsys, synth_dir, tmp_path):
    out = tmp_path / "run"
    args = ("train-moments", "--dataset", f"moments:{synth_dir}", "--out", str(out), *TINY)
    code, stdout, err = run_cli(capsys, "-q", *args, "--epochs", "1")
    assert code == 0, err
    assert "--moment-model" in stdout
    assert (out / "curve.png").stat().st_size > 0 and (out / "model.safetensors").is_file()
    assert [r["epoch"] for r in _rows(out / "metrics.csv")] == ["1"]
    first = _rows(out / "metrics.csv")[0]
    assert {"loss", "VCMR_0.5-r1", "SVMR_0.7-r1"} <= set(first)
    # a second run into the same folder without --resume is refused, the run untouched
    code, _, err = run_cli(capsys, "-q", *args, "--epochs", "2")
    assert code == 2 and "--resume" in err
    code, _, err = run_cli(capsys, "-q", *args, "--epochs", "2", "--resume")
    assert code == 0, err
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0] == first
    # other settings: refused, nothing written
    before = (out / "metrics.csv").read_text()
    code, _, err = run_cli(capsys, "-q", "train-moments", "--dataset", f"moments:{synth_dir}", "--out", str(out),
                           "--hidden", "16", "--batch-size", "16", "--epochs", "3", "--resume")
    assert code == 2 and "other settings" in err
    assert (out / "metrics.csv").read_text() == before
    model = SQuiDNet.load(out)
    assert model.config.hidden == 8 and model.provenance["history"][-1]["epoch"] == 2


def test_empty_and_missing_data(capsys, synth_dir, tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    np.savez(d / "train.npz", frames=np.zeros((0, 4, 8), np.float32), queries=np.zeros((0, 8), np.float32),
             object_queries=np.zeros((0, 8), np.float32), video=np.zeros(0, int), start=np.zeros(0, int),
             end=np.zeros(0, int), objects=np.zeros(0, int), predicates=np.zeros(0, int))
    code, _, err = run_cli(capsys, "-q", "train-moments", "--dataset", f"moments:{d}", "--out", str(tmp_path / "o"),
                           "--eval-split", "none")
    assert code == 2 and "no videos or no queries" in err
    assert not (tmp_path / "o").exists()
    code, _, err = run_cli(capsys, "-q", "train-moments", "--dataset", f"moments:{tmp_path / 'nope'}", "--out",
                           str(tmp_path / "o"))
    assert code == 2 and "xmr synth moments" in err
    (d / "train.npz").write_bytes(b"not numpy")
    code, _, err = run_cli(capsys, "-q", "train-moments", "--dataset", f"moments:{d}", "--out", str(tmp_path / "o"))
    assert code == 2 and "not a numpy" in err
    code, _, err = run_cli(capsys, "-q", "train-moments", "--dataset", "coco:/x", "--out", str(tmp_path / "o"))
    assert code == 2 and "moments:DIR" in err


def test_parse_query_words_rule():
    assert parse_query_words("Phoebe puts one of her ponytails in her mouth.") == ("ponytails", "puts")
    assert parse_query_words("Ross is walking to the door") == ("door", "walking")
    assert parse_query_words("Sheldon laughed") == ("sheldon", "laughed")  # no word after: the one before
    assert parse_query_words("the and of") == ("<none>", "<none>")


def _tvr(tmp_path, dim, rows_val=True):
    rng = np.random.default_rng(0)
    (tmp_path / "features").mkdir(parents=True)
    lens = {"clip_a": 6, "clip_b": 4, "clip_c": 5}
    for name, t in lens.items():
        np.save(tmp_path / "features" / f"{name}.npy", rng.normal(size=(t, dim)).astype(np.float32))
    train = [{"vid_name": "clip_a", "duration": 9.0, "ts": [1.6, 4.4], "desc": "Joey eats a sandwich",
              "desc_id": 1, "type": "v"},
             {"vid_name": "clip_b", "duration": 6.0, "ts": [0.0, 6.0], "desc": "Monica opens the door",
              "desc_id": 2, "type": "v", "object": "door", "predicate": "open"},
             {"vid_name": "clip_c", "duration": 7.5, "ts": [3.0, 7.5], "desc": "Ross eats a sandwich",
              "desc_id": 3, "type": "vt"}]
    (tmp_path / "tvr_train_release.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    if rows_val:
        (tmp_path / "tvr_val_release.jsonl").write_text(json.dumps(train[0]) + "\n")
    return tmp_path


class _Enc:
    """A stand-in text tower (deterministic, 16-wide) so the TVR mapping is checked without a model."""

    dim, spec = 16, "fake"

    def encode_text(self, texts, show_progress=None):
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=16) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def test_tvr_layout_to_moment_data(tmp_path):
    folder = _tvr(tmp_path, 16)
    data, names = tvr_moment_data(str(folder), "train", _Enc(), clip_seconds=1.5)
    assert names == ["clip_a", "clip_b", "clip_c"] and data.frames.shape == (3, 6, 16)
    assert not data.frames[1, 4:].any()  # clip_b padded with zero features past its 4 clips
    # [1.6, 4.4] s over 1.5 s clips -> clips 1..2; [0, 6] -> 0..3; [3.0, 7.5] -> 2..4
    assert data.start.tolist() == [1, 0, 2] and data.end.tolist() == [2, 3, 4]
    # derived words (eats / sandwich) are shared by rows 1 and 3; row 2's own fields are used
    assert data.objects.tolist() == [0, 1, 0] and data.predicates.tolist() == [0, 1, 0]
    np.testing.assert_allclose(data.object_queries[1], _Enc().encode_text(["door"])[0])
    with pytest.raises(ConfigError, match="8 wide but fake encodes 16-wide"):
        tvr_moment_data(str(_tvr(tmp_path / "w", 8)), "train", _Enc())


def test_train_moments_on_tvr_cli(capsys, tmp_path):
    from xmr.encoders import create_encoder

    folder = _tvr(tmp_path, create_encoder("concept").dim)
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "-q", "train-moments", "--dataset", f"tvr:{folder}", "--out", str(out),
                                "--epochs", "1", *TINY)
    assert code == 0, err
    assert "3 queries" in stdout and (out / "metrics.csv").is_file()
    assert "VCMR_0.5-r1" in _rows(out / "metrics.csv")[0]  # evaluated on val
    (folder / "features" / "clip_c.npy").unlink()
    code, _, err = run_cli(capsys, "-q", "train-moments", "--dataset", f"tvr:{folder}", "--out",
                           str(tmp_path / "o2"), "--epochs", "1", *TINY)
    assert code == 2 and "clip_c.npy not found" in err


def test_save_roundtrip(tmp_path, synth_dir):
    d = load_moment_npz(synth_dir / "test.npz")
    back = load_moment_npz(save_moment_data(d, tmp_path / "x.npz"))
    np.testing.assert_array_equal(back.frames, d.frames)
    assert back.clip_seconds == d.clip_seconds and back.start.tolist() == d.start.tolist()
