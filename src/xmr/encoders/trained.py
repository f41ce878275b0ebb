"""``trained:<dir>``: a model written by ``xmr train``, usable wherever a ``--model`` is (index, search, serve, eval).

The folder holds ``config.json`` (``{"model": "xmr-trained", "mode": ..., ...}``) and ``model.safetensors``:

* ``mode: "adapter"`` — adapter heads on a frozen base encoder (``"base"``: its spec, e.g. ``concept``). A text or an
  image goes through the base encoder (L2-normalised, exactly what the training feature cache holds), then through
  its :class:`Adapter`, and is L2-normalised again;
* ``mode: "tiny"`` — a :class:`~xmr.encoders.tiny.TinyDualEncoder` trained from scratch (``"tiny"``: its config);
* ``mode: "tiny_video"`` — a :class:`~xmr.encoders.tiny_video.TinyVideoDualEncoder` (space-time tiny transformer,
  ``"video"``: its config) trained on videos, e.g. with ``--loss miles``; loads as a text + video encoder;
* ``mode: "finetune"`` — an ``hf:`` / ``openclip:`` model fine-tuned by ``xmr train --mode finetune``: ``"base"`` is
  the spec it started from (built first, for its architecture, tokenizer and preprocessing), ``model.safetensors`` its
  whole fine-tuned state dict (LoRA already merged into the weights), loaded strictly into it.

:class:`Adapter` and :class:`AdapterPair` live here (not in ``xmr.train``) because loading a trained model must not
need the training package: the data flow runs encoders -> ... -> train, never back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import config_from_dict
from ..errors import ConfigError
from . import ENCODERS
from .base import Capabilities, Encoder

FORMAT = "xmr-trained"
MODES = ("adapter", "tiny", "finetune", "tiny_video")


@dataclass(frozen=True)
class AdapterConfig:
    """One modality's adapter: ``y = x + up(gelu(down(ln(x))))`` (residual, ``up`` zero-initialised so training
    starts from the frozen model itself) or ``y = up(gelu(down(ln(x))))`` (non-residual, a projection head)."""

    in_dim: int  # width of the frozen features
    dim: int = 0  # output width (0: in_dim); must equal in_dim when residual
    hidden: int = 256  # bottleneck width
    residual: bool = True  # add the input back (needs dim == in_dim)
    seed: int = 0  # initialisation seed (the caller's RNG is left untouched)

    def __post_init__(self):
        if self.in_dim < 1 or self.hidden < 1 or self.dim < 0:
            raise ConfigError(f"AdapterConfig: in_dim and hidden must be >= 1, dim >= 0: {self}")
        if self.residual and self.dim not in (0, self.in_dim):
            raise ConfigError(f"AdapterConfig: a residual adapter keeps the width ({self.in_dim}); got dim={self.dim}")

    @property
    def out_dim(self) -> int:
        return self.dim or self.in_dim


class Adapter(nn.Module):
    """(B, in_dim) frozen features -> (B, out_dim), unnormalised (see :class:`AdapterConfig`)."""

    def __init__(self, config: AdapterConfig):
        super().__init__()
        self.config = c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.ln = nn.LayerNorm(c.in_dim)
            self.down = nn.Linear(c.in_dim, c.hidden)
            self.up = nn.Linear(c.hidden, c.out_dim)
            if c.residual:
                nn.init.zeros_(self.up.weight)
                nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(F.gelu(self.down(self.ln(x))))
        return x + h if self.config.residual else h


HEAD_KINDS = ("uncertainty", "hash")


def build_head(kind: str, config: dict) -> nn.Module:
    """An extra head a training loss saved with its adapters (``config.json`` ``"heads"``):

    * ``uncertainty`` (PCME, DAA): ``{"image_in", "text_in", "dim", "a", "b", ...}`` -> linear ``log σ`` heads on
      the frozen base features (``image``: image_in -> dim, ``text``: text_in -> dim);
    * ``hash`` (DHD): ``{"dim", "bits", "text"}`` -> DHD hash heads ``tanh(LayerNorm(W y))`` on the adapters'
      L2-normalised outputs ``y`` (``image``, and ``text`` when ``"text"`` is true)."""
    try:
        if kind == "uncertainty":
            return nn.ModuleDict({"image": nn.Linear(int(config["image_in"]), int(config["dim"])),
                                  "text": nn.Linear(int(config["text_in"]), int(config["dim"]))})
        if kind == "hash":
            from ..hashing.dhd import HashHead

            heads = {"image": HashHead(int(config["dim"]), int(config["bits"]))}
            if config.get("text", False):
                heads["text"] = HashHead(int(config["dim"]), int(config["bits"]))
            return nn.ModuleDict(heads)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"head {kind!r}: bad config {config!r} ({e})") from None
    raise ConfigError(f"unknown head kind {kind!r} in a trained model; one of {HEAD_KINDS}")


class AdapterPair(nn.Module):
    """The trainable part of ``mode: "adapter"``: ``image`` and ``text`` adapters. ``forward(img_feats, txt_feats)``
    -> L2-normalised (image (B, d), text (B', d)). ``heads``: extra heads a loss trained with them (see
    :func:`build_head`), ``{kind: config}``; their weights are saved under ``heads.<kind>.``."""

    def __init__(self, image: AdapterConfig, text: AdapterConfig, heads: dict | None = None):
        super().__init__()
        if image.out_dim != text.out_dim:
            raise ConfigError(f"image and text adapters must output the same width: {image.out_dim} != {text.out_dim}")
        self.image = Adapter(image)
        self.text = Adapter(text)
        self.head_configs = dict(heads or {})
        self.heads = nn.ModuleDict({k: build_head(k, c) for k, c in self.head_configs.items()})

    @property
    def dim(self) -> int:
        return self.image.config.out_dim

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(x), dim=-1)

    def encode_text(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(x), dim=-1)

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_image(img), self.encode_text(txt)

    def configs(self) -> dict:
        out = {"image_adapter": asdict(self.image.config), "text_adapter": asdict(self.text.config)}
        if self.head_configs:
            out["heads"] = self.head_configs
        return out


def save_trained(directory: str | Path, mode: str, config: dict, module: nn.Module, training: dict,
                 heads: dict | None = None) -> Path:
    """Write a ``trained:`` folder (``config.json`` + ``model.safetensors``); ``config`` holds ``base`` and the
    adapter configs (adapter mode), ``tiny`` (tiny mode) or ``base`` + ``finetune`` + ``lora`` (finetune mode: the
    whole fine-tuned state dict, LoRA merged). ``heads``: ``{kind: (config, module)}`` a loss trained
    next to the adapters (adapter mode; see :func:`build_head`), saved as ``"heads"`` and ``heads.<kind>.*``."""
    if mode not in MODES:
        raise ConfigError(f"unknown trained-model mode {mode!r}; one of {MODES}")
    state = dict(module.state_dict())
    if heads:
        if mode != "adapter":
            raise ConfigError("extra heads (uncertainty, hash) are saved with adapters only: use --mode adapter")
        config = {**config, "heads": {k: dict(c) for k, (c, _) in heads.items()}}
        for kind, (c, m) in heads.items():
            expected = set(build_head(kind, c).state_dict())
            got = m.state_dict()
            if set(got) != expected:
                raise ConfigError(f"head {kind!r}: weights {sorted(got)} do not match its config {c!r}")
            state.update({f"heads.{kind}.{n}": t for n, t in got.items()})
    return save_checkpoint(directory, FORMAT, {"mode": mode, **config}, state, extra={"training": training})


def load_trained_module(directory: str | Path) -> tuple[str, dict, nn.Module]:
    """(mode, config, module with its weights) of a ``trained:`` folder; for ``mode: "finetune"`` the third item is
    the loaded checkpoint (its weights go into the base encoder's model, see :func:`_factory`)."""
    ckpt = load_checkpoint(directory, FORMAT, f"trained:{directory}",
                           hint="train one with `xmr train ... --out DIR`", what="model written by `xmr train`")
    cfg = dict(ckpt.config)
    cfg.pop("training", None)
    mode = cfg.get("mode")
    if mode == "adapter":
        heads = cfg.get("heads") or {}
        if not isinstance(heads, dict):
            raise ConfigError(f"trained:{directory}: 'heads' in config.json must be an object, got {heads!r}")
        module = AdapterPair(config_from_dict(AdapterConfig, cfg["image_adapter"]),
                             config_from_dict(AdapterConfig, cfg["text_adapter"]), heads)
    elif mode == "tiny":
        from .tiny import TinyConfig, TinyDualEncoder

        module = TinyDualEncoder(TinyConfig.from_dict(cfg["tiny"]))
    elif mode == "finetune":
        return mode, cfg, ckpt
    elif mode == "tiny_video":
        from .tiny_video import TinyVideoConfig, TinyVideoDualEncoder

        module = TinyVideoDualEncoder(TinyVideoConfig.from_dict(cfg["video"]))
    else:
        raise ConfigError(f"trained:{directory}: unknown mode {mode!r} in config.json; one of {MODES}")
    return mode, cfg, ckpt.load_into(module)


class AdaptedEncoder(Encoder):
    """A frozen base encoder followed by trained adapters (``mode: "adapter"``)."""

    capabilities = Capabilities()

    def __init__(self, base: Encoder, adapters: AdapterPair):
        self.base = base
        self.device = base.device
        self.adapters = adapters.to(self.device).eval()
        self.dim = adapters.dim

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        f = self.base.encode_text(texts, batch_size=len(texts), show_progress=False)  # normalised, as cached
        return self.adapters.text(torch.from_numpy(f).to(self.device))

    def _encode_image_batch(self, images: list[Image.Image]) -> torch.Tensor:
        f = self.base.encode_images(images, batch_size=len(images), show_progress=False)
        return self.adapters.image(torch.from_numpy(f).to(self.device))

    def describe(self) -> dict:
        return {**super().describe(), "base": self.base.describe(),
                "adapters": self.adapters.configs()}

    # ---- PCME uncertainty (a model trained with --loss pcme / daa) -------------------------------------------------
    @property
    def probabilistic(self) -> bool:
        """True when the model has PCME's ``log σ`` heads (``xmr train --loss pcme`` or ``daa``)."""
        return "uncertainty" in self.adapters.heads

    def encode_with_uncertainty(self, side: str, inputs: list, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings (N, dim) L2-normalised, uncertainty (N,)) of texts (``side="text"``) or images from one base
        pass. The uncertainty is PCME's per-input scalar: the mean over dimensions of ``log σ`` (the log of the
        geometric-mean σ); higher = more ambiguous."""
        if not self.probabilistic:
            raise ConfigError(f"{self.spec} has no uncertainty heads: train it with `xmr train --loss pcme` (or daa)")
        if side not in ("text", "image"):
            raise ConfigError(f"side must be 'text' or 'image', got {side!r}")
        if side == "text":
            feats = self.base.encode_text(list(inputs), batch_size=batch_size, show_progress=False)
        else:
            feats = self.base.encode_images(list(inputs), batch_size=batch_size, show_progress=False)
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)).to(self.device)
            emb = (self.adapters.encode_text(x) if side == "text" else self.adapters.encode_image(x)).cpu().numpy()
            log_sigma = self.adapters.heads["uncertainty"][side](x)
        return emb.astype(np.float32), log_sigma.mean(-1).cpu().numpy().astype(np.float64)


@ENCODERS.register("trained", help="a model written by `xmr train` (trained:<dir>): adapters on a frozen encoder, "
                   "a tiny model trained from scratch, or a fine-tuned hf:/openclip: model")
def _factory(arg: str | None, device: str | None = None) -> Encoder:
    if not arg:
        raise ConfigError("trained: needs the folder `xmr train --out` wrote, e.g. trained:runs/adapter")
    mode, cfg, module = load_trained_module(arg)
    if mode == "tiny":
        from .tiny import TinyEncoder

        return TinyEncoder(module, device=device)
    if mode == "tiny_video":
        from .tiny_video import TinyVideoEncoder

        return TinyVideoEncoder(module, device=device)
    from . import create_encoder

    if mode == "finetune":
        if str(cfg.get("base", "")).partition(":")[0] not in ("hf", "openclip"):
            raise ConfigError(f"trained:{arg}: a fine-tuned model needs an hf: or openclip: base, got {cfg.get('base')!r}")
        enc = create_encoder(cfg["base"], device=device)
        module.load_into(enc.model)
        enc.model.eval()
        return enc

    return AdaptedEncoder(create_encoder(cfg["base"], device=device), module)


def adapted_numpy(adapters: AdapterPair, feats: np.ndarray, side: str) -> np.ndarray:
    """Apply one side's adapter to cached (N, in_dim) features -> (N, d) float32, L2-normalised (no grad)."""
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        f = adapters.encode_image(x) if side == "image" else adapters.encode_text(x)
    return f.numpy()


__all__ = ["AdaptedEncoder", "Adapter", "AdapterConfig", "AdapterPair", "FORMAT", "HEAD_KINDS", "MODES",
           "adapted_numpy", "build_head", "load_trained_module", "save_trained"]
