"""Training losses, one module per paper, registered in :data:`xmr.registries.LOSSES` (``xmr train --loss NAME``):

=================  ==============================================================  ==================
name               paper                                                           module
=================  ==============================================================  ==================
``infonce``        CLIP, Radford et al. 2021                                       :mod:`.infonce`
``vsepp``          VSE++, Faghri et al. 2018                                       :mod:`.vsepp`
``ncr``            NCR, Huang et al. 2021 (noisy correspondence)                   :mod:`.ncr`
``mrl``            MRL, Hu et al. 2021 (noisy labels)                              :mod:`.mrl`
``cots``           COTS, Lu et al. 2022 (queues; token level, AMF)                 :mod:`.cots`
``coder``          CODER, Wang et al. 2022 (weighted negatives; concept level)     :mod:`.coder`
``neighbourhood``  Thomas & Kovashka 2020 (semantic neighbourhoods)                :mod:`.neighbourhood`
``pcme``           PCME, Chun et al. 2021 (probabilistic; adapter mode)             :mod:`.pcme`
``daa``            DAA, Li et al. 2022 (PCME + differentiable ASP; adapter mode)   :mod:`.daa`
``dhd``            DHD, Jang et al. 2022 (hash codes from labels; adapter mode)    :mod:`.dhd`
``teachtext``      TeachText, Croitoru et al. 2021 (multi-teacher distillation)     :mod:`.teachtext`
``miles``          MILES, Ge et al. 2022 (masked video modelling; video, full)     :mod:`.miles`
=================  ==============================================================  ==================
"""
from __future__ import annotations

import json

from ...errors import ConfigError
from ...registries import LOSSES as LOSSES
from . import coder, cots, daa, dhd, infonce, miles, mrl, ncr, neighbourhood, pcme, teachtext, vsepp  # noqa: F401 (registration)
from .base import Batch, EpochContext, LossInfo, TeacherBatch, TrainLoss


def create_loss(name: str, config: dict | str | None, model, info: LossInfo) -> TrainLoss:
    """Build a registered loss; ``config`` is a dict or a JSON object string of its Config fields."""
    if isinstance(config, str):
        try:
            config = json.loads(config) if config.strip() else {}
        except ValueError as e:
            raise ConfigError(f"--loss-config is not valid JSON ({e})") from None
    if config is not None and not isinstance(config, dict):
        raise ConfigError("--loss-config must be a JSON object")
    return LOSSES.get(name).from_dict(config, model, info)


__all__ = ["Batch", "EpochContext", "LOSSES", "LossInfo", "TeacherBatch", "TrainLoss", "create_loss"]
