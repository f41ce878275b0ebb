"""The Recipe1M retrieval protocol (Salvador et al. 2017, kept by every later paper incl. Salvador et al. 2021):
from the test pairs draw ``bags`` random subsets of ``size`` (1k or 10k) image-recipe pairs; in each, rank the
``size`` recipes for every image (image-to-recipe) and the ``size`` images for every recipe (recipe-to-image) by
cosine similarity; report the median rank (medR, 1 = first) and R@1/5/10 averaged over the bags."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def _ranks(s: np.ndarray) -> np.ndarray:
    """1-based rank of the diagonal entry in each row; ties counted against it (a pessimistic rank)."""
    return (s >= np.diag(s)[:, None]).sum(1)


def recipe_protocol(images: np.ndarray, recipes: np.ndarray, size: int = 1000, bags: int = 10, seed: int = 0
                    ) -> dict:
    """``{"im2recipe": {"medR", "R@1", "R@5", "R@10"}, "recipe2im": {...}, "size", "bags"}``; ``images[i]`` pairs with
    ``recipes[i]`` (unit rows). ``size`` larger than the pairs available is an error (say which protocol applies)."""
    n = len(images)
    if len(recipes) != n:
        raise ConfigError(f"recipe protocol: {n} images but {len(recipes)} recipes")
    if size > n or size < 2:
        raise ConfigError(f"recipe protocol: a {size}-pair bag needs at least {size} test pairs, got {n}")
    rng = np.random.default_rng(seed)
    out = {"im2recipe": [], "recipe2im": []}
    for _ in range(bags):
        idx = rng.choice(n, size, replace=False)
        s = images[idx] @ recipes[idx].T
        for name, m in (("im2recipe", s), ("recipe2im", s.T)):
            r = _ranks(m)
            out[name].append([float(np.median(r))] + [float((r <= k).mean()) for k in (1, 5, 10)])
    res = {k: dict(zip(("medR", "R@1", "R@5", "R@10"), np.mean(v, 0).round(4).tolist())) for k, v in out.items()}
    return {**res, "size": size, "bags": bags}


__all__ = ["recipe_protocol"]
