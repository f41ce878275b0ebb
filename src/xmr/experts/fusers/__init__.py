"""Trainable expert fusers (registry :data:`xmr.registries.EXPERT_FUSERS`): ``laff`` (:mod:`.laff`), ``mmt``
(:mod:`.mmt`), ``concat`` (:mod:`.concat`), ``vtc`` (:mod:`.vtc`: VTC's context adapter over side-text rows). Trained by :mod:`xmr.train.fusion` (``xmr train-fusion``), used by the experts stage with
``--expert-fusion NAME:DIR``. Importing this package imports no torch; the fuser modules do."""
from __future__ import annotations

from .base import (FORMAT, VISUAL, FuserConfig, ItemTokens, check_compatible, create_fuser, fuse_numpy, load_fuser,
                   pack_items, parse_fusion, save_fuser, scores_numpy)

__all__ = ["FORMAT", "VISUAL", "FuserConfig", "ItemTokens", "check_compatible", "create_fuser", "fuse_numpy",
           "load_fuser", "pack_items", "parse_fusion", "save_fuser", "scores_numpy"]
