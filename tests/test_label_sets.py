"""Label readers on small files in the real layouts (hash lists, COCO instances, CUB, ActivityNet), with the
label metrics on top, and their errors; NUS-WIDE and FCVID release layouts."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from xmr.data.labels import read_activitynet_classes, read_coco_instances, read_cub_classes, read_hash_list
from xmr.errors import ConfigError
from xmr.eval import label_map


def test_hash_list_multi_hot_and_single_label(tmp_path):
    f = tmp_path / "nuswide_Query.txt"
    f.write_text("a_m.jpg 1 1 0\nb_m.jpg 0 0 1\nc_m.jpg 1 0 0\n")
    ls = read_hash_list(str(f), image_root=str(tmp_path / "imgs"))
    assert ls.media[0] == str(tmp_path / "imgs" / "a_m.jpg")
    np.testing.assert_array_equal(ls.labels, [[1, 1, 0], [0, 0, 1], [1, 0, 0]])
    # the labels feed the metric directly: query a shares a label with c only
    sims = np.array([[0.1, 0.9, 0.5]])
    assert label_map(sims, ls.labels[:1], ls.labels, 2) == pytest.approx(0.5)  # c at position 2
    single = tmp_path / "imagenet_Train.txt"
    single.write_text("n01_1.JPEG 2\nn01_2.JPEG 0\n")
    np.testing.assert_array_equal(read_hash_list(str(single), num_classes=3).labels, [[0, 0, 1], [1, 0, 0]])


@pytest.mark.parametrize("body, msg", [
    ("a.jpg 1 0\nb.jpg 1\n", "1 labels, but earlier lines have 2"),
    ("a.jpg 1 x\n", "integers"),
    ("a.jpg\n", "expected 'NAME LABELS"),
    ("a.jpg 2 0\n", "0/1"),
    ("", "no lines"),
])
def test_hash_list_errors(tmp_path, body, msg):
    f = tmp_path / "l.txt"
    f.write_text(body)
    with pytest.raises(ConfigError, match=msg):
        read_hash_list(str(f))


def test_hash_list_not_utf8(tmp_path):
    f = tmp_path / "l.txt"
    f.write_bytes(b"a\xff.jpg 1 0\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_hash_list(str(f))


def test_coco_instances(tmp_path):
    f = tmp_path / "instances_val2017.json"
    f.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "7.jpg"}, {"id": 9, "file_name": "9.jpg"}, {"id": 3, "file_name": "3.jpg"}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": [{"image_id": 7, "category_id": 1}, {"image_id": 7, "category_id": 18},
                        {"image_id": 9, "category_id": 18}, {"image_id": 9, "category_id": 18}],
    }))
    ls = read_coco_instances(str(f))
    assert ls.classes == ("person", "dog")
    np.testing.assert_array_equal(ls.labels, [[1, 1], [0, 1], [0, 0]])  # image 3 has no instance
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "1.jpg"}], "categories": [{"id": 1, "name": "x"}],
                               "annotations": [{"image_id": 2, "category_id": 1}]}))
    with pytest.raises(ConfigError, match="annotation #0"):
        read_coco_instances(str(bad))
    with pytest.raises(ConfigError, match="not a COCO instances file"):
        (tmp_path / "c.json").write_text("[]")
        read_coco_instances(str(tmp_path / "c.json"))


def test_cub_classes(tmp_path):
    (tmp_path / "images.txt").write_text("1 001.Black_footed_Albatross/a.jpg\n2 002.Laysan_Albatross/b.jpg\n")
    (tmp_path / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    (tmp_path / "image_class_labels.txt").write_text("1 1\n2 2\n")
    ls = read_cub_classes(str(tmp_path))
    assert ls.media[1].endswith("images/002.Laysan_Albatross/b.jpg")
    np.testing.assert_array_equal(ls.labels, [[1, 0], [0, 1]])
    (tmp_path / "image_class_labels.txt").write_text("1 1\n3 2\n")
    with pytest.raises(ConfigError, match="image id 3"):
        read_cub_classes(str(tmp_path))


def test_activitynet_classes(tmp_path):
    f = tmp_path / "activity_net.v1-3.min.json"
    f.write_text(json.dumps({"database": {
        "QOlSCBRmfWY": {"subset": "training", "annotations": [{"label": "Ballet", "segment": [0, 10]}]},
        "abc": {"subset": "validation", "annotations": [{"label": "Ballet"}, {"label": "Archery"}]},
    }}))
    ls = read_activitynet_classes(str(f))
    assert ls.classes == ("Archery", "Ballet") and ls.media == ("QOlSCBRmfWY", "abc")
    np.testing.assert_array_equal(ls.labels, [[0, 1], [1, 1]])
    assert read_activitynet_classes(str(f), subset="validation").media == ("abc",)
    with pytest.raises(ConfigError, match="no video in subset 'testing'"):
        read_activitynet_classes(str(f), subset="testing")


# ---- NUS-WIDE and FCVID release layouts (tests/fixtures/label_sets: hand-written miniatures) ----------------------

LS = Path(__file__).parent / "fixtures" / "label_sets"


def test_nuswide_all_split_and_top_concepts():
    from xmr.data.label_sets import read_nuswide

    ls, dropped = read_nuswide(str(LS / "nuswide"))
    assert dropped == 0 and len(ls) == 6 and ls.classes == ("animal", "beach", "sky")
    assert ls.media[0] == os.path.join(str(LS / "nuswide"), "Flickr", "animal", "0001_100.jpg")  # backslashes split
    assert ls.labels.astype(int).tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 1, 0], [0, 0, 1], [0, 0, 0]]
    # top 2 concepts by frequency: animal 2, beach 2, sky 2 -> ties by concept order: animal, beach
    top, dropped = read_nuswide(str(LS / "nuswide"), top=2)
    assert top.classes == ("animal", "beach") and dropped == 2 and len(top) == 4
    test, _ = read_nuswide(str(LS / "nuswide"), split="test")
    assert len(test) == 2 and test.labels.astype(int).tolist() == [[0, 0, 1], [0, 0, 0]]


def test_nuswide_tags():
    from xmr.data.label_sets import read_nuswide

    ls, dropped = read_nuswide(str(LS / "nuswide"), source="tags", top=1)  # tag counts: animal 2, beach 2, sky 3
    assert ls.classes == ("sky",) and dropped == 3 and len(ls) == 3
    assert [os.path.basename(m) for m in ls.media] == ["0003_102.jpg", "0005_104.jpg", "0006_105.jpg"]
    with pytest.raises(ConfigError, match="use split 'all'"):
        read_nuswide(str(LS / "nuswide"), source="tags", split="train")
    with pytest.raises(ConfigError, match="source must be"):
        read_nuswide(str(LS / "nuswide"), source="captions")


def test_nuswide_errors(tmp_path):
    import shutil

    from xmr.data.label_sets import read_nuswide

    with pytest.raises(ConfigError, match="split must be one of"):
        read_nuswide(str(LS / "nuswide"), split="val")
    with pytest.raises(ConfigError, match=r"top must be an integer in \[1, 3\]"):
        read_nuswide(str(LS / "nuswide"), top=4)
    root = tmp_path / "nw"
    shutil.copytree(LS / "nuswide", root)
    (root / "Groundtruth" / "AllLabels" / "Labels_sky.txt").write_text("0\n1\n")
    with pytest.raises(ConfigError, match="2 lines, but the image list has 6"):
        read_nuswide(str(root))
    (root / "Groundtruth" / "AllLabels" / "Labels_sky.txt").unlink()
    with pytest.raises(ConfigError, match="NUS-WIDE labels of concept 'sky' not found"):
        read_nuswide(str(root))


def test_fcvid_splits_and_class_names(tmp_path):
    from xmr.data.label_sets import read_fcvid

    ls = read_fcvid(str(LS / "fcvid"))
    assert len(ls) == 4 and ls.classes == ("0", "1", "2")
    assert ls.media[2] == os.path.join(str(LS / "fcvid"), "videos", "soccer", "b1.mp4")
    tr = read_fcvid(str(LS / "fcvid"), split="train", classes_file=str(LS / "fcvid" / "materials" / "classes.txt"))
    assert tr.classes == ("basketball", "soccer", "cooking")
    assert [os.path.basename(m) for m in tr.media] == ["a1.mp4", "b1.mp4"]
    assert tr.labels.astype(int).tolist() == [[1, 0, 0], [0, 1, 0]]
    import shutil

    root = tmp_path / "fc"
    shutil.copytree(LS / "fcvid", root)
    (root / "materials" / "FCVID_Label.txt").write_text("1 0 0\n1 0\n0 1 0\n0 0 1\n")
    with pytest.raises(ConfigError, match="line 2: 2 labels, but earlier rows have 3"):
        read_fcvid(str(root))
    (root / "materials" / "FCVID_Label.txt").write_text("1 0 0\n")
    with pytest.raises(ConfigError, match="1 rows, but .* lists 4 videos"):
        read_fcvid(str(root))
    with pytest.raises(ConfigError, match="3 class names, but"):
        (root / "materials" / "FCVID_Label.txt").write_text("1 0\n1 0\n0 1\n0 1\n")
        read_fcvid(str(root), classes_file=str(root / "materials" / "classes.txt"))
