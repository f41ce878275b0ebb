"""Winoground text / image / group scores: hand-made cases, and real OpenCLIP embeddings when shared/ exists."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xmr.errors import ConfigError
from xmr.eval import winoground_scores, winoground_scores_from_sims
from xmr.eval.winoground import winoground_correct

SHARED = Path(__file__).parents[1] / ".." / "shared"
WINOGROUND_NPZ = SHARED / "data" / "winoground" / "winoground_openclip_vitb32_laion2b.npz"

# s[k] = [[s(c0,i0), s(c0,i1)], [s(c1,i0), s(c1,i1)]]
HAND_SIMS = np.array([
    [[0.9, 0.1], [0.2, 0.8]],  # both right: text, image, group
    [[0.5, 0.6], [0.1, 0.9]],  # captions right for each image, but c0 prefers i1: text only
    [[0.5, 0.1], [0.6, 0.9]],  # images right for each caption, but i0 prefers c1: image only
    [[0.5, 0.5], [0.5, 0.5]],  # all tied: strict inequalities fail everything
    [[0.1, 0.9], [0.8, 0.2]],  # swapped: nothing
])


def test_hand_made_scores():
    assert winoground_scores_from_sims(HAND_SIMS) == {"text": 40.0, "image": 40.0, "group": 20.0}
    correct = winoground_correct(HAND_SIMS)
    assert correct["text"].tolist() == [True, True, False, False, False]
    assert correct["image"].tolist() == [True, False, True, False, False]
    assert correct["group"].tolist() == [True, False, False, False, False]


def test_embeddings_layout_and_normalisation():
    # one example; rows 0, 1 = image 0, image 1 and caption 0, caption 1
    images = np.array([[1.0, 0.0], [1.0, 1.0]])
    captions = np.array([[1.0, 0.0], [0.0, 3.0]])
    # raw dot products: s(c0,i0)=1, s(c0,i1)=1, s(c1,i0)=0, s(c1,i1)=3 -> text right, image tied (fails)
    assert winoground_scores(images, captions, normalize=False) == {"text": 100.0, "image": 0.0, "group": 0.0}
    # cosine: s(c0,i1) = s(c1,i1) = 1/sqrt(2) -> text tied (fails), image right
    assert winoground_scores(images, captions) == {"text": 0.0, "image": 100.0, "group": 0.0}
    before = images.copy()
    winoground_scores(images, captions)
    assert np.array_equal(images, before)  # normalising works on a private copy


def test_swapping_one_pair_flips_the_example():
    rng = np.random.default_rng(0)
    cap = rng.standard_normal((6, 8))
    img = cap + 0.01 * rng.standard_normal((6, 8))  # image j close to caption j: everything right
    assert winoground_scores(img, cap) == {"text": 100.0, "image": 100.0, "group": 100.0}
    swapped = img[[1, 0, 2, 3, 4, 5]]  # example 0's images swapped
    assert winoground_scores(swapped, cap) == pytest.approx({"text": 200 / 3, "image": 200 / 3, "group": 200 / 3})


@pytest.mark.parametrize(
    "img, cap, match",
    [
        (np.ones((3, 4)), np.ones((3, 4)), "2 \\* num_examples"),
        (np.ones((2, 4)), np.ones((2, 5)), "same shape"),
        (np.ones(4), np.ones(4), "2 \\* num_examples"),
        (np.zeros((2, 4)), np.ones((2, 4)), "all zeros"),
        (np.full((2, 4), np.nan), np.ones((2, 4)), "NaN"),
    ],
)
def test_bad_inputs(img, cap, match):
    with pytest.raises(ConfigError, match=match):
        winoground_scores(img, cap)


def test_bad_sims_shape():
    with pytest.raises(ConfigError, match="num_examples, 2, 2"):
        winoground_scores_from_sims(np.zeros((4, 2)))


@pytest.mark.skipif(not WINOGROUND_NPZ.exists(), reason=f"shared data not available ({WINOGROUND_NPZ})")
def test_openclip_vitb32_laion2b_embeddings():
    data = np.load(WINOGROUND_NPZ)
    img, cap = data["img"], data["cap"]
    assert img.shape == cap.shape == (800, 512)
    # 400 examples -> scores are multiples of 0.25; published OpenCLIP ViT-B-32 laion2b: roughly 30 / 11 / 8
    want = {"text": 34.75, "image": 11.0, "group": 7.5}
    assert winoground_scores(img, cap) == want
    torch = pytest.importorskip("torch")
    assert winoground_scores(torch.from_numpy(img), torch.from_numpy(cap)) == want
