"""Composers: learned composition of a reference image's embedding with a modification text's embedding into one
query in a frozen encoder's joint space (composed / language-guided retrieval; docs/composed.md).

One module per paper, registered in :data:`xmr.registries.COMPOSERS`: ``tirg`` (:mod:`.tirg`), ``jvsm``
(:mod:`.jvsm`). Saved as ``config.json`` + ``model.safetensors`` (:func:`save_composer` / :func:`load_composer`);
trained by ``xmr train-compose`` (:mod:`xmr.train.compose`). The training-free baseline (the mean of the two
embeddings) is :meth:`xmr.retrieval.Query.composed` without a composer.
"""
from __future__ import annotations

from ..registries import COMPOSERS
from .base import (FORMAT, ComposerConfig, check_compatible, compose_numpy, create_composer, load_composer,
                   save_composer)

__all__ = ["COMPOSERS", "FORMAT", "ComposerConfig", "check_compatible", "compose_numpy", "create_composer",
           "load_composer", "save_composer"]
