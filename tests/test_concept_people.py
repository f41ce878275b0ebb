"""benchmarks/concept_people.py's numpy-only parts (issue 17 measurement): caption people counts, the NMS that merges
tiled face boxes, and the adapter block built from the detectors' raw columns. The MediaPipe extraction itself runs
in a separate venv (mediapipe==0.10.21) and is not tested here."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "concept_people.py"
    spec = importlib.util.spec_from_file_location("bench_concept_people", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_caption_counts_hand_cases():
    b = _bench()
    texts = ["A black dog runs through the snow .", "A girl in a pink dress climbs the stairs",
             "Two men ride bikes", "A group of children play soccer", "A man and a woman sit on a bench",
             "The skier jumps"]
    # none, one, two ("two" wins over the plural "men"), many, two singular person words, one
    assert b.caption_counts(texts).argmax(1).tolist() == [0, 1, 2, 3, 2, 1]
    assert b.caption_counts(texts).sum(1).tolist() == [1.0] * 6  # one-hot


def test_nms_merges_the_same_face_seen_in_a_tile():
    b = _bench()
    whole = [(0.9, 0.10, 0.10, 0.20, 0.20)]
    tile = [(0.8, 0.11, 0.10, 0.21, 0.20), (0.7, 0.60, 0.60, 0.65, 0.66)]  # same face (IoU 0.82) + a new small one
    kept = b._nms(whole + tile)
    assert [k[0] for k in kept] == [0.9, 0.7]


def test_people_block_counts_and_scale():
    b = _bench()
    raw = np.zeros((3, len(b.COLUMNS)), np.float32)
    raw[1, b.COL["faces_merged"]], raw[1, b.COL["face_area_max"]] = 1, 0.04
    raw[2, b.COL["faces_merged"]], raw[2, b.COL["persons"]] = 5, 2
    faces = b.people_block(raw, ("faces",)) * np.sqrt(2)  # undo the part's scaling
    assert faces[:, :4].argmax(1).tolist() == [0, 1, 3]  # 0 faces, 1 face, 5 faces -> "3+"
    assert np.isclose(faces[1, 5], 0.2)  # sqrt of the area fraction
    persons = b.people_block(raw, ("persons",)) * np.sqrt(2)
    assert persons[:, :4].argmax(1).tolist() == [0, 0, 2]
    full = b.people_block(raw)
    assert full.shape[1] == sum(b.people_block(raw, (p,)).shape[1] for p in b.PARTS)
    assert np.all(np.linalg.norm(full, axis=1) < 1.5)  # about unit norm: the recipe's weight sets its share
