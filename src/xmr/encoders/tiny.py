"""``tiny`` / ``tiny:<dir>``: a small dual encoder for tests and for training from scratch.

* image tower: a ViT over ``patch_size`` patches of a ``image_size`` square image, class token pooled;
* text tower: a causal transformer over UTF-8 bytes (no vocabulary file), pooled at the end-of-text token;
* a linear projection of each tower to ``dim`` and a learnable logit scale (CLIP).

``tiny`` is a fresh random initialisation from ``TinyConfig.seed`` (announced with a warning: its embeddings mean
nothing until trained); ``tiny:<dir>`` loads what :meth:`TinyDualEncoder.save` wrote (``config.json`` +
``model.safetensors``). The token-level outputs (:meth:`TinyEncoder.encode_image_tokens`, ``encode_text_tokens``)
are there for heads that need patch or word tokens (e.g. video heads such as TS2-Net).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint  # noqa: F401 (file names re-exported)
from ..config import config_from_dict
from ..errors import ConfigError
from ..media.image import ImageLike, ImagePreprocess, load_image
from . import ENCODERS
from ._device import resolve_device
from .base import Capabilities, Encoder

log = logging.getLogger(__name__)

_FORMAT = "xmr-tiny"  # "model" field of config.json, so other directories are recognised as such

# byte-level text vocabulary: ids 0..255 are UTF-8 bytes, then three specials
BOS, EOS, PAD = 256, 257, 258
VOCAB_SIZE = 259


@dataclass(frozen=True)
class TinyConfig:
    """Architecture and initialisation of :class:`TinyDualEncoder` (saved as ``config.json``)."""

    image_size: int = 32  # input side: images are resized (shorter side) and centre-cropped to this square
    patch_size: int = 8  # ViT patch side; image_size must be a multiple of it
    width: int = 64  # transformer width of both towers
    layers: int = 2  # transformer blocks per tower
    heads: int = 4  # attention heads per block; width must be a multiple of it
    mlp_ratio: float = 4.0  # MLP hidden width = width * mlp_ratio
    context_length: int = 32  # text tokens including BOS and EOS; longer texts are cut (in UTF-8 bytes)
    dim: int = 64  # shared embedding width (output of both projections)
    init_logit_scale: float = math.log(1 / 0.07)  # initial log of the similarity scale (CLIP's 1/0.07)
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)  # pixel normalisation mean (CLIP)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)  # pixel normalisation std (CLIP)
    seed: int = 0  # seed of the random initialisation (the global torch RNG is left untouched)

    #: ranges a config.json is held to before any tensor is allocated (xmr.config.check_values)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "image_size": (1, 1024), "patch_size": (1, 1024), "width": (1, 2048), "layers": (1, 48), "heads": (1, 64),
        "mlp_ratio": (0.0625, 16), "context_length": (3, 2048), "dim": (1, 4096), "init_logit_scale": (-100, 100)}
    #: most parameters a TinyConfig may describe (2 GB of float32), checked from the sizes before building
    MAX_PARAMS: ClassVar[int] = 500_000_000

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ConfigError(f"TinyConfig: image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.heads:
            raise ConfigError(f"TinyConfig: width {self.width} is not a multiple of heads {self.heads}")
        if self.context_length < 3:
            raise ConfigError("TinyConfig: context_length must be at least 3 (BOS, one byte, EOS)")
        if min(self.width, self.layers, self.dim, self.heads, self.patch_size) < 1:
            raise ConfigError(f"TinyConfig: sizes must be positive: {self}")
        if self.approx_params() > self.MAX_PARAMS:
            raise ConfigError(f"TinyConfig: about {self.approx_params():,} parameters, over the "
                              f"{self.MAX_PARAMS:,} limit (width {self.width}, layers {self.layers})")

    def approx_params(self) -> int:
        """Parameters of both towers from the sizes alone (blocks, embeddings, projections): no allocation."""
        block = int((4 + 2 * self.mlp_ratio) * self.width * self.width)
        embed = (VOCAB_SIZE + self.context_length + self.num_patches + 1) * self.width
        return 2 * self.layers * block + embed + 3 * self.patch_size ** 2 * self.width + 2 * self.width * self.dim

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_dict(cls, d: dict) -> "TinyConfig":
        return config_from_dict(cls, {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def tokenize(texts: Sequence[str], context_length: int) -> torch.Tensor:
    """Texts -> (B, context_length) int64 ids: BOS, the UTF-8 bytes (cut to fit), EOS, then PAD."""
    ids = torch.full((len(texts), context_length), PAD, dtype=torch.long)
    for i, t in enumerate(texts):
        row = [BOS, *t.encode("utf-8")[: context_length - 2], EOS]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids


class _Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, n, c = x.shape  # (B, N, width)
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, heads, N, width / heads)
        x = x + self.proj(a.transpose(1, 2).reshape(b, n, c))
        return x + self.mlp(self.ln2(x))


class TinyDualEncoder(nn.Module):
    """The nn.Module. ``forward(pixels, ids)`` returns L2-normalised (image, text) embeddings and the logit scale."""

    def __init__(self, config: TinyConfig = TinyConfig()):
        super().__init__()
        self.config = c = config
        with torch.random.fork_rng(devices=[]):  # deterministic init without touching the caller's RNG
            torch.manual_seed(c.seed)
            # image tower
            self.patch_embed = nn.Conv2d(3, c.width, c.patch_size, stride=c.patch_size, bias=False)
            self.cls_token = nn.Parameter(torch.randn(c.width) * 0.02)
            self.image_pos = nn.Parameter(torch.randn(1 + c.num_patches, c.width) * 0.02)
            self.image_ln_pre = nn.LayerNorm(c.width)
            self.image_blocks = nn.ModuleList(_Block(c.width, c.heads, c.mlp_ratio) for _ in range(c.layers))
            self.image_ln_post = nn.LayerNorm(c.width)
            self.image_proj = nn.Linear(c.width, c.dim, bias=False)
            # text tower
            self.token_embed = nn.Embedding(VOCAB_SIZE, c.width)
            nn.init.normal_(self.token_embed.weight, std=0.02)
            self.text_pos = nn.Parameter(torch.randn(c.context_length, c.width) * 0.01)
            self.text_blocks = nn.ModuleList(_Block(c.width, c.heads, c.mlp_ratio) for _ in range(c.layers))
            self.text_ln_post = nn.LayerNorm(c.width)
            self.text_proj = nn.Linear(c.width, c.dim, bias=False)
            self.logit_scale = nn.Parameter(torch.tensor(float(c.init_logit_scale)))

    def encode_image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels -> (B, 1 + P, width): class token then P patch tokens, final-normed."""
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2)  # (B, P, width)
        cls = self.cls_token.expand(x.shape[0], 1, -1)
        x = self.image_ln_pre(torch.cat([cls, x], dim=1) + self.image_pos)
        for blk in self.image_blocks:
            x = blk(x)
        return self.image_ln_post(x)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, dim) unnormalised."""
        return self.image_proj(self.encode_image_tokens(pixels)[:, 0])

    def encode_text_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids from :func:`tokenize` -> (B, L, width). Causal: token i sees tokens <= i, so the PAD
        positions after EOS never influence the real ones."""
        x = self.token_embed(ids) + self.text_pos[: ids.shape[1]]
        for blk in self.text_blocks:
            x = blk(x, causal=True)
        return self.text_ln_post(x)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) -> (B, dim) unnormalised, read at the EOS position."""
        eos = (ids == EOS).int().argmax(dim=1)  # (B,)
        tokens = self.encode_text_tokens(ids)
        return self.text_proj(tokens[torch.arange(ids.shape[0], device=ids.device), eos])

    def forward(self, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (image (B, dim), text (B', dim)) L2-normalised, and the scale exp(logit_scale) clamped at 100."""
        img = F.normalize(self.encode_image(pixels), dim=-1)
        txt = F.normalize(self.encode_text(ids), dim=-1)
        return img, txt, self.logit_scale.exp().clamp(max=100.0)

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed)."""
        return save_checkpoint(directory, _FORMAT, asdict(self.config), self)

    @classmethod
    def load(cls, directory: str | Path) -> "TinyDualEncoder":
        """Load what :meth:`save` wrote. Raises ModelUnavailableError (missing files) or ConfigError (bad config)."""
        ckpt = load_checkpoint(
            directory, _FORMAT, f"tiny:{directory}",
            hint="create one with TinyDualEncoder.save(dir) (or use `tiny` for a fresh random model)",
            what="tiny-model config (a transformers checkpoint loads with hf:)")
        return ckpt.load_into(cls(TinyConfig.from_dict(ckpt.config)))


class TinyEncoder(Encoder):
    """:class:`TinyDualEncoder` behind the :class:`Encoder` interface, plus token-level outputs."""

    capabilities = Capabilities(patch_tokens=True, text_tokens=True)

    def __init__(self, model: TinyDualEncoder, device: str | torch.device | None = None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.config = c = model.config
        self.dim = c.dim
        self.token_width = c.width  # W of encode_image_tokens / encode_text_tokens
        self.preprocess = ImagePreprocess(size=c.image_size, crop=c.image_size, mean=c.mean, std=c.std)

    def pixels(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """Images (paths or PIL) -> (B, 3, S, S) float32 on the model's device."""
        x = np.stack([self.preprocess(load_image(im)) for im in images])
        return torch.from_numpy(x).to(self.device)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> (B, context_length) ids on the model's device."""
        return tokenize(list(texts), self.config.context_length).to(self.device)

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenize(texts))

    def _encode_image_batch(self, images: list[Image.Image]) -> torch.Tensor:
        return self.model.encode_image(self.pixels(images))

    @torch.no_grad()
    def encode_image_tokens(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """(B,) images -> (B, 1 + P, width) tokens (class token first), no grad. For training, call
        ``self.model.encode_image_tokens(self.pixels(images))``."""
        return self.model.encode_image_tokens(self.pixels(images))

    @torch.no_grad()
    def encode_text_tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) texts -> tokens (B, L, width) and mask (B, L), True on real tokens (BOS .. EOS), no grad."""
        ids = self.tokenize(texts)
        return self.model.encode_text_tokens(ids), ids != PAD

    def save(self, directory: str | Path) -> Path:
        return self.model.save(directory)

    def describe(self) -> dict:
        return {**super().describe(), "config": asdict(self.config)}


@ENCODERS.register("tiny", help="small dual encoder for tests/training: tiny (random init, seed 0) or tiny:<dir>")
def _factory(arg: str | None, device: str | None = None) -> TinyEncoder:
    if arg:
        return TinyEncoder(TinyDualEncoder.load(arg), device=device)
    config = TinyConfig()
    log.warning("tiny: random initialisation (seed %d): embeddings are meaningless until trained", config.seed)
    return TinyEncoder(TinyDualEncoder(config), device=device)
