"""``hash:<dir>``: the binary codes of a model trained with ``xmr train --loss dhd`` (DHD hash heads on adapters).

A text or an image goes through the trained model (frozen base encoder, then its adapter, L2-normalised) and then
through DHD's hash head ``h = tanh(LayerNorm(W y))`` (:class:`xmr.hashing.dhd.HashHead`). The encoder's embedding
is ``h`` L2-normalised, ``bits`` wide: its signs are the code (``sign(h)``, what DHD retrieves with) and its values
the relaxed code. An index built with it uses the ``binary`` vector backend by default (``xmr index --model
hash:DIR``): FAISS stores ``bits / 8`` bytes per item and searches by Hamming distance, and the first stage re-ranks
``rerank_factor × k`` Hamming candidates exactly with the stored float vectors (the relaxed codes, inner product).

Bit convention: DHD's :meth:`~xmr.hashing.dhd.DHD.codes` sets a bit where ``h >= 0``; the binary backend where the
stored value is ``> 0``. They differ only where ``h`` is exactly 0 (``tanh`` of a LayerNorm output: measure zero).
"""
from __future__ import annotations

import torch
from PIL import Image

from ..errors import ConfigError
from . import ENCODERS
from .base import Capabilities, Encoder


class HashEncoder(Encoder):
    """A trained adapter model whose outputs go through its DHD hash heads (``bits``-wide relaxed codes)."""

    capabilities = Capabilities()

    def __init__(self, adapted, directory: str):
        heads = adapted.adapters.heads
        if "hash" not in heads:
            raise ConfigError(f"hash:{directory} has no hash head: train one with `xmr train --mode adapter --loss dhd "
                              f"--out {directory}` (a dataset with class labels)")
        self.adapted = adapted
        self.device = adapted.device
        self.head_config = dict(adapted.adapters.head_configs["hash"])
        self.bits = int(self.head_config["bits"])
        self.dim = self.bits
        self.has_text = "text" in heads["hash"]
        if not self.has_text:
            self.capabilities = Capabilities(text=False)

    def _head(self, side: str) -> torch.nn.Module:
        return self.adapted.adapters.heads["hash"][side]

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        if not self.has_text:
            raise ConfigError(f"{self.spec} has no text hash head (trained image-to-image); query it with an image")
        y = torch.nn.functional.normalize(self.adapted._encode_text_batch(texts), dim=-1)
        return self._head("text")(y)

    def _encode_image_batch(self, images: list[Image.Image]) -> torch.Tensor:
        y = torch.nn.functional.normalize(self.adapted._encode_image_batch(images), dim=-1)
        return self._head("image")(y)

    def describe(self) -> dict:
        return {**super().describe(), "bits": self.bits, "trained": self.adapted.describe()}


@ENCODERS.register("hash", help="binary codes of a model trained with `xmr train --loss dhd` (hash:<dir>); index it "
                   "with the binary backend (the default for hash:)")
def _factory(arg: str | None, device: str | None = None) -> Encoder:
    if not arg:
        raise ConfigError("hash: needs the folder `xmr train --loss dhd --out DIR` wrote, e.g. hash:runs/dhd")
    from .trained import AdaptedEncoder, load_trained_module

    mode, cfg, module = load_trained_module(arg)
    if mode != "adapter":
        raise ConfigError(f"hash:{arg} is a {mode!r} model; hash codes come from `xmr train --mode adapter --loss dhd`")
    from . import create_encoder

    return HashEncoder(AdaptedEncoder(create_encoder(cfg["base"], device=device), module), arg)


__all__ = ["HashEncoder"]
