"""The arithmetic behind issue 17's round-3 measurements (benchmarks/concept_round3.py): the exact shortcuts it
takes (view rows, weighted ridge), kernel ridge and CCA on hand-checkable cases, and that the round-3 code with no
options is round 2's default recipe."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def c3():
    sys.path.insert(0, str(BENCH))
    try:
        import concept_round3
        import concept_rounds

        yield concept_round3, concept_rounds
    finally:
        sys.path.remove(str(BENCH))


class _Set:
    """A stand-in for a cached dataset: per-view logits, captions, class probabilities."""

    def __init__(self, n_img=30, caps=3, n_cls=20, d=12, seed=0):
        rng = np.random.default_rng(seed)
        self.logits = rng.normal(size=(n_img, 7, n_cls)) + rng.normal(size=(n_img, 1, n_cls)) * 2
        self.zm = self.logits[:, 1:].mean(1)
        e = np.exp(self.logits[:, 1:] - self.logits[:, 1:].max(-1, keepdims=True))
        self.pm = (e / e.sum(-1, keepdims=True)).mean(1)
        self.t2i = np.repeat(np.arange(n_img), caps)
        q = self.zm[self.t2i] @ rng.normal(size=(n_cls, d)) + rng.normal(size=(len(self.t2i), d))
        self.q = q / np.linalg.norm(q, axis=1, keepdims=True)
        self.texts = [f"caption {i}" for i in range(len(self.t2i))]  # round 2's Recipe reads them (count features)


def test_weighted_ridge_on_image_rows_equals_the_per_caption_ridge(c3):
    """sum_c |x_i W - q_c|^2 = n_i |x_i W - mean_c q_c|^2 + const: one weighted row per image gives the same map."""
    m3, cr = c3
    S = _Set()
    X = np.random.default_rng(1).normal(size=(30, 20))
    per_caption = cr._ridge(X[S.t2i], S.q, 2.0)
    qbar = np.stack([S.q[S.t2i == i].mean(0) for i in range(30)])
    np.testing.assert_allclose(m3._wridge(X, qbar, np.full(30, 3.0), 2.0), per_caption, atol=1e-10)


def test_duplicated_inputs_with_other_targets_equal_the_mean_target(c3):
    """The text map with view rows: the same caption repeated with K targets = one row with their mean, lambda / K."""
    m3, cr = c3
    rng = np.random.default_rng(2)
    X, Ys = rng.normal(size=(40, 6)), rng.normal(size=(3, 40, 5))
    stacked = cr._ridge(np.vstack([X] * 3), np.vstack(list(Ys)), 3.0)
    np.testing.assert_allclose(cr._ridge(X, Ys.mean(0), 1.0), stacked, atol=1e-10)


def test_kernel_ridge_interpolates_with_tiny_lambda_and_shrinks_to_the_mean(c3):
    m3, _ = c3
    rng = np.random.default_rng(3)
    X = rng.normal(size=(25, 8))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = rng.normal(size=(25, 4))
    np.testing.assert_allclose(m3.KernelRidge(X, Y, 1e-9)(X), Y, atol=1e-5)
    far = m3.KernelRidge(X, Y, 1e9)
    np.testing.assert_allclose(far(X[:3]), np.tile(Y.mean(0), (3, 1)), atol=1e-6)
    # gamma from the median squared distance: a point at that distance from a single centre gets weight exp(-1)
    kr = m3.KernelRidge(X[:2], Y[:2], 1e-12)
    assert kr.gamma == pytest.approx(1 / np.sum((X[0] - X[1]) ** 2))


def test_cca_finds_the_shared_direction(c3):
    """Two views share one latent; the first canonical pair recovers it (|corr| ~ 1), PLS too, both as unit maps."""
    m3, _ = c3
    rng = np.random.default_rng(4)
    z = rng.normal(size=500)
    Q = np.outer(z, [1, 0, 0, 0]) + 0.05 * rng.normal(size=(500, 4))
    V = np.outer(z, [0, 0, 2, 0, 0, 0]) + 0.05 * rng.normal(size=(500, 6))
    for reg in (1e-3, None):
        mq, A, mv, B = m3.cca_fit(Q, V, k=1, reg=reg, p=1)
        a, b = (Q - mq) @ A[:, 0], (V - mv) @ B[:, 0]
        assert abs(np.corrcoef(a, b)[0, 1]) > 0.99
        assert abs(np.corrcoef(a, z)[0, 1]) > 0.99


def test_no_options_is_round_two_default_and_view_rows_change_the_fit(c3):
    m3, cr = c3
    train, test = _Set(seed=0), _Set(seed=5)
    ce = np.random.default_rng(6).normal(size=(20, 12))
    ce /= np.linalg.norm(ce, axis=1, keepdims=True)
    ref = cr.Recipe(dict(features="logits", a=0.3, b=0.3, caption_ridge=10.0), [train], ce).sims(test)
    np.testing.assert_allclose(m3.Recipe3({}, [train], ce).sims(test), ref, atol=1e-8)
    aug = m3.Recipe3(dict(aug="views"), [train], ce)
    assert np.abs(aug.sims(test) - ref).max() > 1e-3
    assert aug.Wi.shape == (21, 12)  # V map fitted on 30 x 8 rows (view mean + 7 views), same shape
    rows, img = m3.aug_rows(train, dict(aug="subsets", n_sub=4), np.random.default_rng(0))
    assert rows.shape == (120, 20) and np.array_equal(img, np.repeat(np.arange(30), 4))
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0)  # per-row standardised: norm 1 by construction
