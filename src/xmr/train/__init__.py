"""Training (``xmr train``): what is trained is explicit — adapter heads on frozen towers (``mode="adapter"``, the
towers run once into a feature cache) or a ``tiny`` dual encoder, every weight (``mode="full"``) — with a loss from
:data:`xmr.registries.LOSSES` (one module per paper under :mod:`xmr.train.losses`), on HF Accelerate.

* :mod:`.config` — :class:`TrainConfig`;
* :mod:`.model` — :class:`AdapterModel`, :class:`TinyModel`;
* :mod:`.data` / :mod:`.features` — pairs in memory, the frozen-feature cache;
* :mod:`.loop` — :func:`train` (epochs, evaluation with an xmr protocol, checkpoints, resume);
* :mod:`.state` — checkpoints (JSON + safetensors); :mod:`.report` — metrics.csv, curve.png, TensorBoard.

The folder a run writes loads as ``trained:<dir>`` (:mod:`xmr.encoders.trained`) in index, search, serve and eval.
This package sits after ``eval`` in the data flow (it evaluates every epoch); nothing earlier imports it.
"""
from __future__ import annotations

from .config import TrainConfig
from .loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
