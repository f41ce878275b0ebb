"""``codecmr:DIR`` as an xmr Encoder: ``encode_text`` embeds C source functions; images are refused (its second
modality is binaries: :meth:`CodeCmrEncoder.encode_binaries` takes objdump instruction lists)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from xmr.encoders.base import Capabilities, Encoder
from xmr.errors import ConfigError

from .model import bag, binary_tokens, load, source_tokens


class CodeCmrEncoder(Encoder):
    capabilities = replace(Capabilities(), images=False, languages=("c",))

    def __init__(self, directory: str):
        self.model = load(directory)
        self.dim = self.model.config.dim

    def _encode_text_batch(self, texts):
        with torch.no_grad():
            return self.model.encode_sources(torch.from_numpy(bag([source_tokens(t) for t in texts])))

    def _encode_image_batch(self, images):
        raise ConfigError("codecmr has no image tower: its second modality is compiled functions (encode_binaries)")

    def encode_binaries(self, instruction_lists) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(bag([binary_tokens(i) for i in instruction_lists]))
            return self.model.encode_binaries(x).numpy().astype(np.float32)


def make_encoder(arg, device=None):
    if not arg:
        raise ConfigError("codecmr needs a trained model folder: codecmr:DIR (python -m xmr_codecmr.bench --save DIR)")
    return CodeCmrEncoder(arg)
