"""Winoground text / image / group scores (Thrush et al., CVPR 2022).

Each example k has two captions (c0, c1) and two images (i0, i1); caption j describes image j and both
captions use the same words in a different order. With s(c, i) a caption-image similarity:

* text score: the right caption wins for both images: s(c0,i0) > s(c1,i0) and s(c1,i1) > s(c0,i1);
* image score: the right image wins for both captions: s(c0,i0) > s(c0,i1) and s(c1,i1) > s(c1,i0);
* group score: both at once.

Inequalities are strict: a tie counts as a failure (a constant scorer gets 0, not 100). Scores are reported
in percent of examples, as the Winoground paper does.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ._inputs import to_numpy


def _embeddings(x, name: str) -> np.ndarray:
    arr = to_numpy(x, name)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[0] % 2:
        raise ConfigError(
            f"{name} must be (2 * num_examples, dim) with rows 2k, 2k+1 = example k's pair, "
            f"got shape {tuple(arr.shape)}"
        )
    if arr.dtype.kind not in "fiu":
        raise ConfigError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)  # a private copy: float64 keeps near-ties from flipping with BLAS order
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains NaN or inf")
    return arr


def winoground_correct(sims) -> dict[str, np.ndarray]:
    """Per-example booleans ``{"text", "image", "group"}`` from scores ``sims[k, c, i] = s(caption c, image i)``
    of shape (num_examples, 2, 2)."""
    s = to_numpy(sims, "sims")
    if s.ndim != 3 or s.shape[1:] != (2, 2) or s.shape[0] == 0:
        raise ConfigError(f"sims must be (num_examples, 2, 2) = [example, caption, image], got {tuple(s.shape)}")
    if s.dtype.kind == "f" and np.isnan(s).any():
        raise ConfigError("sims contains NaN")
    text = (s[:, 0, 0] > s[:, 1, 0]) & (s[:, 1, 1] > s[:, 0, 1])
    image = (s[:, 0, 0] > s[:, 0, 1]) & (s[:, 1, 1] > s[:, 1, 0])
    return {"text": text, "image": image, "group": text & image}


def winoground_scores_from_sims(sims) -> dict[str, float]:
    """``{"text", "image", "group"}`` in percent from scores of shape (num_examples, 2, 2) =
    [example, caption, image] (e.g. from a cross-encoder or re-scorer)."""
    return {k: 100.0 * float(np.mean(v)) for k, v in winoground_correct(sims).items()}


def winoground_scores(image_emb, caption_emb, *, normalize: bool = True) -> dict[str, float]:
    """Winoground ``{"text", "image", "group"}`` scores in percent from embeddings in Winoground order.

    ``image_emb`` and ``caption_emb`` are (2 * num_examples, dim): rows 2k and 2k+1 are example k's image 0 /
    image 1 and caption 0 / caption 1. ``normalize=True`` scores pairs by cosine similarity (rows L2-normalised,
    as CLIP scores them); ``False`` uses raw dot products. Computed in float64; ties fail (strict ``>``).
    """
    img = _embeddings(image_emb, "image_emb")
    cap = _embeddings(caption_emb, "caption_emb")
    if img.shape != cap.shape:
        raise ConfigError(
            f"image_emb {tuple(img.shape)} and caption_emb {tuple(cap.shape)} must have the same shape "
            "(two images and two captions per example, same embedding size)"
        )
    if normalize:
        for name, arr in (("image_emb", img), ("caption_emb", cap)):
            norms = np.linalg.norm(arr, axis=1, keepdims=True)
            if (norms == 0).any():
                raise ConfigError(f"{name} row {int(np.flatnonzero(norms == 0)[0])} is all zeros; cannot normalise")
            arr /= norms  # arr is our private float64 copy
    n, dim = img.shape
    sims = np.einsum("kcd,kid->kci", cap.reshape(n // 2, 2, dim), img.reshape(n // 2, 2, dim))
    return winoground_scores_from_sims(sims)
