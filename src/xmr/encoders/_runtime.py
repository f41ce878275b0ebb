"""Which runtime runs a wheel-shipped network (``onnx`` or ``torch``), and the two runtimes behind one interface.

* image network: ``net(x) -> logits`` with ``x`` a ``(B, 3, H, W)`` float32 array (``pixels="float"``) or a
  ``(B, H, W, 3)`` uint8 RGB array whose normalisation is part of the network (``pixels="uint8"``, built with
  :func:`uint8_input`), logits a float32 array;
* sentence model: ``model.encode(texts, batch_size) -> (N, width)`` float32 unit vectors.

The choice: ``runtime`` argument, else ``$XMR_RUNTIME``, else ``auto`` = ``onnx`` on the CPU (``device`` None, "auto"
or "cpu") and ``torch`` on any other device (ORT here is the CPU build). ``onnx`` with a GPU device is refused,
never quietly run elsewhere.

Threads: ORT sessions use one intra-op thread per core this process may run on (:func:`._onnx.cpu_threads`); torch
keeps its own default (one per physical core), which xmr does not change (it is process-wide state).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ConfigError

RUNTIMES = ("auto", "onnx", "torch")
RUNTIME_ENV = "XMR_RUNTIME"


def resolve_runtime(runtime: str | None, device):
    """``(runtime, device)``: ``("onnx", "cpu")`` or ``("torch", torch.device)``."""
    runtime = runtime or os.environ.get(RUNTIME_ENV) or "auto"
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r} (from the runtime option or ${RUNTIME_ENV}); "
                          f"use one of {', '.join(RUNTIMES)}")
    cpu = device is None or str(device) in ("auto", "cpu")
    if runtime == "auto":
        runtime = "onnx" if cpu else "torch"
    if runtime == "onnx":
        if not cpu:
            raise ConfigError(f"runtime onnx runs on the CPU, not on device {device!r}: drop --device or set "
                              f"{RUNTIME_ENV}=torch")
        return "onnx", "cpu"
    from ._device import resolve_device

    return "torch", resolve_device(device)


def image_net(runtime: str, device, name: str, build: Callable, weights: list[Path], size: int,
              pixels: str = "float", key: str = ""):
    if runtime == "onnx":
        from ._onnx import OnnxImageNet

        return OnnxImageNet(name, build, weights, size, pixels=pixels, key=key)
    return _TorchImageNet(build().to(device), device)


def uint8_input(net, mean: tuple[float, float, float], std: tuple[float, float, float], rescale: float = 1 / 255):
    """``net`` (a torch module on ``(B, 3, H, W)`` normalised float32) behind its input normalisation: the returned
    module takes ``(B, H, W, 3)`` uint8 RGB and computes ``((x * rescale) - mean) / std`` in float32, channels first,
    the same operations in the same order as :meth:`xmr.media.image.ImagePreprocess.to_array` (so both runtimes and
    the float path agree to float32 rounding). Exported to ONNX, this moves the per-image normalisation off the
    Python side into the graph, where ORT runs it vectorised in its own threads."""
    import torch

    class Uint8Input(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
            self.rescale = float(rescale)

        def forward(self, x):  # (B, H, W, 3) uint8
            x = x.permute(0, 3, 1, 2).to(torch.float32) * self.rescale  # (B, 3, H, W)
            return self.net((x - self.mean) / self.std)

    return Uint8Input()


def sentence_model(runtime: str, device, model_dir: Path):
    if runtime == "onnx":
        from ._onnx import OnnxSentenceEncoder

        return OnnxSentenceEncoder(model_dir)
    return _TorchSentence(model_dir, device)


class _TorchImageNet:
    def __init__(self, module, device):
        self.module, self.device = module.eval(), device

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(x)).to(self.device)).float().cpu().numpy()


class _TorchSentence:
    def __init__(self, model_dir: Path, device):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device=str(device))

    def encode(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        return self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                                 show_progress_bar=False).astype(np.float32)
