"""What ``xmr train`` trains, made explicit: :class:`AdapterModel` (adapter heads on frozen towers, which run once
into a feature cache) or :class:`TinyModel` (the ``tiny`` dual encoder, every weight trained from scratch or from a
``tiny:<dir>`` start). Both map their inputs to L2-normalised embeddings with ``encode_image`` / ``encode_text`` and
can build a fresh copy with another seed (``fresh``, for co-training losses such as NCR)."""
from __future__ import annotations

from dataclasses import asdict, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders.tiny import TinyConfig, TinyDualEncoder
from ..encoders.trained import AdapterConfig, AdapterPair, save_trained


class AdapterModel(nn.Module):
    """Inputs: cached frozen features, (B, D_img) and (B, D_txt)."""

    mode = "adapter"

    def __init__(self, image: AdapterConfig, text: AdapterConfig, base: str):
        super().__init__()
        self.base = base  # the frozen encoder's spec (absolute paths)
        self.net = AdapterPair(image, text)

    @property
    def dim(self) -> int:
        return self.net.dim

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encode_image(x)

    def encode_text(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encode_text(x)

    def fresh(self, seed: int) -> "AdapterModel":
        c_img, c_txt = self.net.image.config, self.net.text.config
        return AdapterModel(replace(c_img, seed=seed), replace(c_txt, seed=seed + 1), self.base)

    def describe(self) -> dict:
        return {"mode": self.mode, "base": self.base, **self.net.configs()}

    def save(self, directory, training: dict, heads: dict | None = None):
        return save_trained(directory, "adapter", {"base": self.base, **self.net.configs()}, self.net, training,
                            heads)


class TinyModel(nn.Module):
    """Inputs: (B, 3, S, S) normalised pixels and (B, L) byte token ids."""

    mode = "tiny"

    def __init__(self, config: TinyConfig, init_state: dict | None = None):
        super().__init__()
        self.net = TinyDualEncoder(config)
        if init_state is not None:
            self.net.load_state_dict(init_state)

    @property
    def dim(self) -> int:
        return self.net.config.dim

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net.encode_image(x), dim=-1)

    def encode_text(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net.encode_text(x), dim=-1)

    def fresh(self, seed: int) -> "TinyModel":
        return TinyModel(replace(self.net.config, seed=seed))

    def describe(self) -> dict:
        return {"mode": self.mode, "tiny": asdict(self.net.config)}

    def save(self, directory, training: dict, heads: dict | None = None):
        return save_trained(directory, "tiny", {"tiny": asdict(self.net.config)}, self.net, training, heads)


__all__ = ["AdapterModel", "TinyModel"]
