"""The ``tvr`` dataset scheme (TVR release jsonl), its raw rows for xmr.eval.vcmr, and per-video feature files."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import FIXTURES
from xmr.data import load_dataset
from xmr.data.tvr import load_tvr_features, read_tvr_rows
from xmr.errors import ConfigError
from xmr.eval import vcmr

TVR = FIXTURES / "video_datasets" / "tvr"


def test_moments_mode_one_item_per_description_with_times():
    ds = load_dataset(f"tvr:{TVR}:train")
    assert [it.id for it in ds.items] == ["11", "12", "13"]
    assert [(it.start, it.end) for it in ds.items] == [(3.0, 9.5), (20.0, 31.25), (0.0, 4.5)]
    assert ds.items[0].media == str(TVR / "videos" / "show_s01e01_seg02_clip_00.mp4")
    assert ds.texts[1] == "She says she is late."


def test_paragraph_mode_and_both_splits():
    ds = load_dataset(f"tvr:{TVR}?mode=paragraph&root=/clips&ext=mkv")
    assert [it.id for it in ds.items] == ["show_s01e01_seg02_clip_00", "show_s01e02_seg02_clip_07",
                                          "show_s02e01_seg02_clip_03", "show_s02e01_seg02_clip_04"]
    assert ds.texts[0] == "A man opens the door. She says she is late."
    assert ds.items[0].media == "/clips/show_s01e01_seg02_clip_00.mkv"


def test_rows_feed_vcmr_as_ground_truth():
    rows = read_tvr_rows(str(TVR / "tvr_val_release.jsonl"))
    sub = {"video2idx": {"show_s02e01_seg02_clip_03": 0, "show_s02e01_seg02_clip_04": 1},
           "VCMR": [{"desc_id": 21, "predictions": [[0, 10.0, 12.0, 1.0]]},
                    {"desc_id": 22, "predictions": [[0, 1.5, 30.0, 1.0], [1, 1.5, 25.0, 0.5]]}]}
    out = vcmr(rows, sub)
    assert out["VCMR"]["0.5-r1"] == 50.0 and out["VCMR"]["0.7-r5"] == 100.0
    assert out["VCMR_by_type"]["desc_type_ratio"] == "v 50.0 t 0.0 vt 50.0"


@pytest.mark.parametrize("line, match", [
    ('{"vid_name": "a", "ts": [5, 2], "desc": "x", "desc_id": 1}', "line 1: ts start 5.0 is after end 2.0"),
    ('{"ts": [1, 2], "desc": "x", "desc_id": 1}', "line 1: needs a 'vid_name'"),
    ('{"vid_name": "a", "ts": [1, 2], "desc": "", "desc_id": 1}', "line 1: expected a non-empty caption"),
    ('{"vid_name": "../a", "ts": [1, 2], "desc": "x", "desc_id": 1}', "line 1: needs a 'vid_name'"),
    ('not json', "line 1 is not JSON"),
])
def test_bad_rows_name_the_line(tmp_path, line, match):
    (tmp_path / "tvr_train_release.jsonl").write_text(line + "\n")
    with pytest.raises(ConfigError, match=match):
        load_dataset(f"tvr:{tmp_path}:train")


def test_test_public_is_not_a_split():
    with pytest.raises(ConfigError, match="unknown TVR split 'test_public'"):
        load_dataset(f"tvr:{TVR}:test_public")


def test_features_load_and_refuse_missing_or_ragged(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((4, 3), np.float32))
    np.save(tmp_path / "b.npy", np.ones((2, 5), np.float32))
    assert load_tvr_features(str(tmp_path), ["a"])["a"].shape == (4, 3)
    with pytest.raises(ConfigError, match="has shape"):
        load_tvr_features(str(tmp_path), ["a", "b"])
    with pytest.raises(ConfigError, match="c.npy not found"):
        load_tvr_features(str(tmp_path), ["c"])
