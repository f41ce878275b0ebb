"""Multi-query retrieval: several text queries describe one target (Multi-Query Video Retrieval, Wang et al. 2022).

Fusion methods (registry :data:`FUSIONS`, see :func:`fuse_sims`):

* ``mean-sim`` — mean over the group of each query's similarity to an item;
* ``mean-emb`` — cosine similarity to the L2-normalised mean of the group's embeddings. Per group it ranks items
  exactly like ``mean-sim`` (the mean of dot products is the dot product with the mean); scores differ by a
  per-group factor, so only item->text rankings can differ;
* ``max`` — the best of the group's similarities;
* ``learned:DIR`` — :class:`QueryWeighting`: softmax attention weights from a linear scorer over each query
  embedding (and its agreement with the group mean), then cosine similarity to the weighted mean. Trained with
  InfoNCE by :func:`train_query_weighting`; saved as ``config.json`` + ``model.safetensors``.

Evaluation groups (:func:`group_captions`): item i's captions, in the loader's order, are cut into consecutive
groups of N (captions 0..N-1, N..2N-1, ...); a remainder shorter than N is dropped, and an item with fewer than N
captions contributes no query (it stays in the gallery).
"""
from __future__ import annotations

from .fusion import FUSIONS, fuse_sims, group_captions, multi_query_search, parse_fuse_spec
from .learned import QueryWeighting, QueryWeightingConfig, train_query_weighting

__all__ = ["FUSIONS", "fuse_sims", "group_captions", "multi_query_search", "parse_fuse_spec", "QueryWeighting",
           "QueryWeightingConfig", "train_query_weighting"]
