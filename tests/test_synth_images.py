"""``xmr synth images``: the pictures show what the captions say, corruptions touch only the train split and are
recorded, the same seed gives the same set, and the manifest loads as a dataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from xmr.errors import ConfigError
from xmr.synth.images import BACKGROUND, COLOURS, REGIONS, SynthImageConfig, generate_images


def _rows(manifest):
    return [json.loads(x) for x in manifest.read_text().splitlines()]


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return generate_images(tmp_path_factory.mktemp("syn") / "n", n=200, seed=5, noise=0.3, partial=0.2,
                           mislabel=0.25, test_fraction=0.25)


def test_pictures_show_the_captioned_colour_and_region(noisy):
    for r in _rows(noisy)[:60]:
        im = np.asarray(Image.open(noisy.parent / r["media"]).convert("RGB")).astype(int)
        fg = np.abs(im - BACKGROUND).max(axis=2) > 60  # object pixels (background noise is +-8)
        assert fg.sum() > 10
        mean = im[fg].mean(axis=0)
        assert np.abs(mean - np.array(COLOURS[r["colour"]])).max() < 30, r["id"]
        ys, xs = np.nonzero(fg)
        (x0, x1), (y0, y1) = REGIONS[r["region"]]
        size = im.shape[0]
        assert x0 * size - 1 <= xs.min() and xs.max() <= x1 * size + 1, r["id"]
        assert y0 * size - 1 <= ys.min() and ys.max() <= y1 * size + 1, r["id"]
        if not r["corrupted"] and not r["partial"]:
            for c in r["captions"]:
                assert r["colour"] in c and r["shape"] in c and r["region"] in c and r["size"] in c


def test_corruptions_are_train_only_recorded_and_real(noisy):
    rows = _rows(noisy)
    by_id = {r["id"]: r for r in rows}
    test = [r for r in rows if r["split"] == "test"]
    train = [r for r in rows if r["split"] == "train"]
    assert len(test) == 50 and len(train) == 150
    assert not any(r["corrupted"] or r["partial"] or r["mislabelled"] for r in test)
    corrupted = [r for r in train if r["corrupted"]]
    assert 0.15 < len(corrupted) / len(train) < 0.45  # drawn with p = 0.3
    for r in corrupted:  # the captions are another class's image's
        src = by_id[r["caption_source"]]
        assert src["split"] == "train" and src["true_label"] != r["true_label"]
        if not src["partial"]:  # they describe the source image, not this one
            assert all(src["colour"] in c and src["shape"] in c for c in r["captions"])
            assert not all(r["colour"] in c and r["shape"] in c for c in r["captions"])
    for r in train:
        assert r["mislabelled"] == (r["label"] != r["true_label"])
        assert r["true_label"] == f"{r['colour']} {r['shape']}"
    assert any(r["mislabelled"] for r in train) and any(r["partial"] for r in train)
    summary = json.loads((noisy.parent / "synth.json").read_text())
    assert summary["corrupted"] == len(corrupted) and summary["config"]["noise"] == 0.3


def test_same_seed_same_set_and_manifest_loads(tmp_path):
    from xmr.data import load_dataset

    a = generate_images(tmp_path / "a", n=12, seed=1, noise=0.5)
    b = generate_images(tmp_path / "b", n=12, seed=1, noise=0.5)
    c = generate_images(tmp_path / "c", n=12, seed=2, noise=0.5)
    assert a.read_text() == b.read_text() != c.read_text()
    assert (a.parent / "images" / "00003.png").read_bytes() == (b.parent / "images" / "00003.png").read_bytes()
    # another noise level: the same pictures and the same true captions, only the corrupted pairs differ
    d = generate_images(tmp_path / "d", n=12, seed=1, noise=0.0)
    assert (a.parent / "images" / "00011.png").read_bytes() == (d.parent / "images" / "00011.png").read_bytes()
    for ra, rd in zip(_rows(a), _rows(d)):
        assert ra["label"] == rd["label"] and (ra["corrupted"] or ra["captions"] == rd["captions"])
    assert any(r["corrupted"] for r in _rows(a))
    ds = load_dataset(f"manifest:{a}", split="train")
    assert len(ds) == 9 and ds.num_texts == 27


def test_bad_settings_and_existing_out_are_refused(tmp_path, capsys):
    with pytest.raises(ConfigError, match="noise must be a fraction"):
        SynthImageConfig(noise=1.5)
    out = tmp_path / "used"
    out.mkdir()
    (out / "x.txt").write_text("keep")
    code, _, err = run_cli(capsys, "synth", "images", "--out", str(out), "--n", "4")
    assert code == 2 and "not an empty folder" in err and (out / "x.txt").read_text() == "keep"
    code, stdout, err = run_cli(capsys, "synth", "images", "--out", str(tmp_path / "ok"), "--n", "8", "--noise", "0.5")
    assert code == 0, err
    assert "wrote 8 images (6 train, 2 test;" in stdout and (tmp_path / "ok" / "captions.jsonl").is_file()
