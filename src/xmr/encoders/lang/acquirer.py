"""MLA language acquirers on the frozen all-MiniLM-L6-v2 text tower (Zhang, Hu & Jin, "Generalizing Multimodal
Pre-training into Multilingual via Language Acquisition", arXiv 2206.11091, 2022).

MLA keeps the native (English) text encoder frozen and gives each new language L a *language acquisition encoder*:

* a **language-specific embedding layer**: L's own tokenizer (here a WordPiece vocabulary trained with ``tokenizers``
  on L's training text, :mod:`.tokenizer`) and its own token embeddings, fed to the frozen tower in place of the
  English word embeddings (the frozen position / type embeddings and embedding LayerNorm are kept);
* **language acquirers**: a light bottleneck after every frozen transformer block,
  ``h_l <- h_l + W_up^l act(W_down^l h_l)`` (``W_down``: width -> bottleneck, ``W_up``: bottleneck -> width, the
  latter zero-initialised so that training starts from the frozen tower itself).

The sentence embedding is the tower's own read-out (mean pooling over the attention mask, L2 normalisation), so a
German sentence lands in the very space every English query and every index already uses.

Deviations from the paper (also in docs/multilingual.md):

* the embedding table is **factorised** (``V x r`` times ``r x width``, r = ``embed_rank``) so that three bundled
  languages fit in a few MB of fp16; the paper's table is full-rank;
* the new embeddings are **initialised** from the frozen English embeddings of each new token's English-WordPiece
  pieces (mean), then truncated to rank r by SVD, a standard vocabulary-transfer start (the paper does not
  prescribe one that we could read);
* only the **Native Language Transfer** stage is implemented (:mod:`xmr.train.mla`): Language Exposure needs images
  paired with L's captions, which Multi30K's text release here does not include; it is omitted.

Everything here is torch (imported by the caller, never on the English ONNX path).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...checkpoint import load_checkpoint, save_checkpoint
from ...config import config_from_dict
from ...errors import ConfigError

#: checkpoint format name in config.json
FORMAT = "xmr-mla-acquirer"
TOKENIZER_FILE = "tokenizer.json"
PROVENANCE_FILE = "provenance.json"


@dataclass(frozen=True)
class AcquirerConfig:
    lang: str = "de"  # ISO 639-1 code of the language acquired
    vocab_size: int = 8000  # WordPiece vocabulary of the language-specific tokenizer
    embed_rank: int = 128  # r of the factorised embedding table (V x r) @ (r x width)
    bottleneck: int = 64  # acquirer width after every frozen block
    width: int = 384  # the frozen tower's hidden width (all-MiniLM-L6-v2: 384)
    layers: int = 6  # the frozen tower's blocks (all-MiniLM-L6-v2: 6)
    max_length: int = 48  # tokens per sentence (captions are short; the English path keeps its own 256)
    tower: str = "all-MiniLM-L6-v2"  # the frozen native tower the acquirer was trained against

    LIMITS = {"vocab_size": (100, 200_000), "embed_rank": (8, 1024), "bottleneck": (1, 4096), "max_length": (4, 512)}

    def __post_init__(self):
        if not (isinstance(self.lang, str) and 2 <= len(self.lang) <= 8 and self.lang.isalpha() and self.lang.islower()):
            raise ConfigError(f"acquirer lang must be a lower-case language code such as 'de', got {self.lang!r}")
        if self.lang == "en":
            raise ConfigError("acquirer lang 'en' is the native tower's own language: nothing to acquire")

    @classmethod
    def from_dict(cls, d: dict) -> "AcquirerConfig":
        return config_from_dict(cls, d)


def _torch():
    import torch

    return torch


def build_acquirer(cfg: AcquirerConfig):
    """The trainable part of one language: ``embed_a`` (V x r), ``embed_b`` (r x width), ``down.i`` / ``up.i``."""
    torch = _torch()
    nn = torch.nn

    class LanguageAcquirer(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_a = nn.Parameter(torch.zeros(cfg.vocab_size, cfg.embed_rank))
            self.embed_b = nn.Parameter(torch.zeros(cfg.embed_rank, cfg.width))
            self.down = nn.ModuleList(nn.Linear(cfg.width, cfg.bottleneck) for _ in range(cfg.layers))
            self.up = nn.ModuleList(nn.Linear(cfg.bottleneck, cfg.width) for _ in range(cfg.layers))
            for u in self.up:  # zero: an untrained acquirer changes nothing after the embedding layer
                nn.init.zeros_(u.weight)
                nn.init.zeros_(u.bias)

        def embed(self, ids):
            return self.embed_a[ids] @ self.embed_b

        def adapt(self, i: int, h):
            return h + self.up[i](torch.nn.functional.gelu(self.down[i](h)))

    return LanguageAcquirer()


def count_parameters(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


class FrozenTower:
    """all-MiniLM-L6-v2's BERT (torch, frozen, eval mode) run on a language's embeddings with its acquirers."""

    def __init__(self, model_dir: Path, device="cpu"):
        torch = _torch()
        from transformers import AutoModel

        self.model_dir = Path(model_dir)
        self.bert = AutoModel.from_pretrained(str(self.model_dir)).eval().to(device)
        for p in self.bert.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device) if isinstance(device, str) else device
        self.width = int(self.bert.config.hidden_size)
        self.layers = list(self.bert.encoder.layer)
        self._active = None  # the acquirer whose adapters the hooks apply (None: plain tower)
        for i, layer in enumerate(self.layers):
            layer.register_forward_hook(self._hook(i))

    def _hook(self, i: int):
        def hook(_module, _inputs, output):
            if self._active is None:
                return output
            if isinstance(output, tuple):
                return (self._active.adapt(i, output[0]),) + tuple(output[1:])
            return self._active.adapt(i, output)

        return hook

    def english_word_embeddings(self) -> np.ndarray:
        return self.bert.embeddings.word_embeddings.weight.detach().cpu().numpy()

    def sentence(self, acquirer, ids, mask):
        """(B, T) ids of the acquirer's tokenizer and mask -> (B, width) unit sentence embeddings (grad flows to the
        acquirer)."""
        torch = _torch()
        self._active = acquirer
        try:
            h = self.bert(inputs_embeds=acquirer.embed(ids), attention_mask=mask,
                          token_type_ids=torch.zeros_like(ids)).last_hidden_state
        finally:
            self._active = None
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def save_acquirer(directory, cfg: AcquirerConfig, acquirer, tokenizer_json: str, *, training: dict | None = None,
                  dtype: str = "float32") -> Path:
    """config.json + model.safetensors (``dtype`` float32 or float16) + tokenizer.json."""
    torch = _torch()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = acquirer.state_dict() if hasattr(acquirer, "state_dict") else acquirer
    if dtype == "float16":
        state = {k: v.to(torch.float16) for k, v in state.items()}
    (d / TOKENIZER_FILE).write_text(tokenizer_json, encoding="utf-8")
    return save_checkpoint(d, FORMAT, asdict(cfg), state, extra={"training": training} if training else None)


@dataclass
class LoadedAcquirer:
    cfg: AcquirerConfig
    directory: Path
    module: object  # the LanguageAcquirer (float32, eval)
    tokenizer: object  # tokenizers.Tokenizer, truncation at cfg.max_length, no padding
    training: dict | None = None


def load_acquirer(directory, label: str | None = None) -> LoadedAcquirer:
    """Read a folder written by :func:`save_acquirer` (fp16 weights are widened to float32)."""
    torch = _torch()
    from tokenizers import Tokenizer

    d = Path(directory).expanduser()
    label = label or f"acquirer {d}"
    ckpt = load_checkpoint(d, FORMAT, label, hint="train one with: xmr train-text --method mla --lang L ...",
                           what="language acquirer")
    training = ckpt.config.pop("training", None)
    cfg = AcquirerConfig.from_dict(ckpt.config)
    tok_path = d / TOKENIZER_FILE
    if not tok_path.is_file():
        from ...errors import ModelUnavailableError

        raise ModelUnavailableError(f"{label}: {TOKENIZER_FILE} is missing; the acquirer cannot read its language")
    tok = Tokenizer.from_file(str(tok_path))
    tok.enable_truncation(cfg.max_length)
    tok.no_padding()
    module = build_acquirer(cfg)
    from ...checkpoint import load_state

    state = {k: v.to(torch.float32) for k, v in ckpt.state_dict().items()}
    load_state(module, state, label)
    return LoadedAcquirer(cfg, d, module.eval(), tok, training)


def encode_ids(tokenizer, texts: list[str], pad_id: int = 0):
    """Texts -> (ids, mask) int64 tensors, right-padded to the longest."""
    torch = _torch()
    enc = tokenizer.encode_batch([str(t).strip() for t in texts])
    n = max((len(e.ids) for e in enc), default=1)
    ids = torch.full((len(enc), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(enc), n), dtype=torch.long)
    for r, e in enumerate(enc):
        ids[r, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
        mask[r, : len(e.ids)] = 1
    return ids, mask


def read_provenance(directory) -> dict:
    p = Path(directory) / PROVENANCE_FILE
    return json.loads(p.read_text("utf-8")) if p.is_file() else {}
