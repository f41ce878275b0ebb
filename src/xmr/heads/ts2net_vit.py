"""TS2-Net as the paper trains it (Liu et al., "TS2-Net: Token Shift and Selection Transformer for Text-Video
Retrieval", ECCV 2022, arXiv 2207.07852), on a trainable CLIP-style ``hf:`` model (transformers ``CLIPModel`` and
the types with the same vision tower: ``vision_model.encoder.layers[i].self_attn``, ``post_layernorm``,
``visual_projection``). Written from the paper's method section and the authors' released code (``LiuRicky/ts2_net``:
``modules/until_module.py`` ``PatchShiftModule``, ``modules/differential_topk.py``, ``modules/modeling.py``), not
copied. The frozen-feature approximation stays in :mod:`xmr.heads.ts2net`.

Per video of T frames (pixels ``(B, T, 3, H, W)``):

1. **Token shift transformer** (paper Sec. 3.2): the last ``shift_layers`` ViT blocks (TS2-Net: 2 of 12, blocks
   10-11) see, as the input of their self-attention, the frame's tokens with *whole* patch tokens swapped in from
   the neighbouring frames: patch ``p`` (0-based after the class token) comes from frame t-1 when
   ``p % s == 0`` and from frame t+1 when ``p % s == s // 2``, ``s = round(1 / shift_fraction)`` (1/7: tokens 1, 8,
   ..., 43 backward and 4, 11, ..., 46 forward on a 7x7 grid, as in the released code); the class token and the
   residual stream are not shifted (``x + attn(shift(ln_1(x)))``). Implemented as a forward pre-hook on each of
   those blocks' ``self_attn`` (:func:`xmr.heads.ts2net.token_shift` with ``mode="tokens"``), so the model keeps
   its modules and state-dict keys: a transformers checkpoint loads into it and its ``clip.*`` weights load back
   into a plain ``CLIPModel``. Outside :meth:`TS2NetViT.frame_embeddings` (single images, text) the hook does nothing.
2. **Token selection transformer** (Sec. 3.3): every output token goes through ``post_layernorm`` and the
   ``visual_projection`` (as the released code, which selects among CLIP-projected tokens); a scorer (the released
   code's ``PredictorLG``: per token LayerNorm -> linear D -> D/2 -> GELU, concatenated with the class token's, ->
   linear D -> D/2 -> GELU -> linear -> 1 -> tanh, no biases) scores the patch tokens, and the top ``select_k``
   (TS2-Net: 3) are kept next to the class token by the perturbed-maximum differentiable top-k (Berthet et al.
   2020; :func:`xmr.heads.ts2net.perturbed_topk`: 500 draws, sigma 0.05) while training, the hard top-k (patch
   order) in evaluation;
3. a temporal transformer over all kept tokens of all frames (CLIP4Clip's seqTransf, as TS2-Net uses it): a
   position embedding per token index, pre-norm blocks, plus a residual to the input; each frame's class-token
   output is that frame's embedding ``v_t`` (``(B, T, D)``, D = the projection width);
4. **text-weighted frame aggregation** (Sec. 3.4, cross-modal matching): ``s(t, v) = sum_f softmax_f(c_hat_f / tau)
   c_f`` with ``c_f = cos(t, v_f)``, ``c_hat = c / ||c||_2`` over the frames, ``tau = 1/4``
   (:func:`xmr.heads.textweighted.text_weighted_similarity`) — query-dependent, so an index keeps the frame
   embeddings and re-scores (``ts2net:DIR`` encoder, :mod:`xmr.encoders.ts2net`).

Training (``xmr train-head --head ts2net-vit``, :mod:`xmr.train.ts2net_vit`): symmetric InfoNCE on
``exp(logit_scale) * s`` (the released code's ``CrossEn`` both ways), the last ``N`` blocks of each CLIP tower plus
the final norms / projections (``--finetune last:N``) or all of CLIP (``whole``, the default: TS2-Net's script
trains all of it, CLIP at lr 1e-7, the new parts at 1e-4), and every TS2-Net part; a checkpoint every epoch and
``--resume`` (:mod:`xmr.train.ts2net_vit_state`).

Deviations (deliberate): the temporal transformer and its positions start random (CLIP4Clip / TS2-Net copy the
first CLIP text layers and CLIP's text position embeddings; their width is not the projection width in every
checkpoint), with ``layers`` blocks (TS2-Net: 4); evaluation uses the hard top-k (the released code keeps the
random perturbed mix at test time, so its scores are not deterministic); the shift stride is ``1/shift_fraction``
of the patches (the released code's stride is ``tokens // 7``, the same on ViT-B/32's 50 tokens but 28 on
ViT-B/16, where it shifts 7 tokens each way); the model's own ``logit_scale`` is a new parameter started from
CLIP's (CLIP's stays frozen, as in ``xmr train --mode finetune``); no video masks (every frame is real here).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .textweighted import text_weighted_similarity
from .ts2net import perturbed_topk, token_shift

FORMAT = "xmr-ts2net-vit"


@dataclass(frozen=True)
class TS2NetViTConfig:
    dim: int  # projection width D of the CLIP model (its visual_projection / text embedding width)
    shift_layers: int = 2  # last ViT blocks whose attention input is token-shifted (TS2-Net: 2; 0: no shift)
    shift_fraction: float = 1 / 7  # one patch token in 1/fraction from t-1, one from t+1 (TS2-Net's n_div = 7)
    shift_mode: str = "tokens"  # "tokens": TS2-Net's whole-token shift; "channels": TSM-style channel slices (ablation)
    select_k: int = 3  # patch tokens kept per frame next to the class token (TS2-Net: 3)
    selection: str = "perturbed"  # "perturbed": TS2-Net's differentiable top-k in training; "hard": top-k always
    perturb_samples: int = 500  # noise draws of the perturbed top-k (TS2-Net's code: 500)
    perturb_sigma: float = 0.05  # noise scale of the perturbed top-k (TS2-Net's code: 0.05)
    layers: int = 1  # temporal transformer blocks over the kept tokens (TS2-Net: 4)
    heads: int = 0  # attention heads of the temporal transformer (0: max(1, dim // 64), CLIP's rule)
    mlp_ratio: float = 4.0  # MLP hidden width = dim * mlp_ratio (CLIP: 4)
    max_frames: int = 12  # most frames per clip (position embeddings: max_frames * (1 + select_k))
    num_frames: int = 12  # frames per video it was trained with (index / eval decode and subsample to it)
    temperature: float = 0.25  # softmax temperature of the text-weighted frame aggregation (TS2-Net's code: 1/4)
    frame_norm: bool = True  # L2-normalise a pair's frame similarities before that softmax (TS2-Net's code)
    init_logit_scale: float = math.log(1 / 0.07)  # start of the trained similarity scale (log)
    seed: int = 0  # initialisation seed of the TS2-Net parts (the global RNG is left untouched)

    LIMITS: ClassVar[dict] = {"dim": (1, 8192), "shift_layers": (0, 64), "select_k": (1, 4096),
                              "perturb_samples": (1, 100_000), "layers": (1, 48), "heads": (0, 64),
                              "mlp_ratio": (0.0625, 16), "max_frames": (1, 4096), "num_frames": (1, 4096),
                              "shift_fraction": (0, 0.5), "temperature": (1e-4, 100)}

    def __post_init__(self):
        if self.shift_mode not in ("tokens", "channels"):
            raise ConfigError(f"TS2NetViTConfig: shift_mode must be 'tokens' or 'channels', got {self.shift_mode!r}")
        if self.selection not in ("perturbed", "hard"):
            raise ConfigError(f"TS2NetViTConfig: selection must be 'perturbed' or 'hard', got {self.selection!r}")
        if self.num_frames > self.max_frames:
            raise ConfigError(f"TS2NetViTConfig: num_frames {self.num_frames} > max_frames {self.max_frames}")
        if self.dim % self.n_heads:
            raise ConfigError(f"TS2NetViTConfig: dim {self.dim} is not a multiple of heads {self.n_heads}")
        if self.perturb_sigma <= 0 or self.temperature <= 0:
            raise ConfigError("TS2NetViTConfig: perturb_sigma and temperature must be > 0")
        if self.dim < 2:
            raise ConfigError("TS2NetViTConfig: dim must be >= 2 (the scorer halves it)")

    @property
    def n_heads(self) -> int:
        return self.heads or max(1, self.dim // 64)


def vision_blocks(clip: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """(vision transformer with ``post_layernorm``, its block list) of a CLIP-style model; ConfigError otherwise."""
    tower = getattr(clip, "vision_model", None)
    if tower is not None and not hasattr(tower, "post_layernorm"):  # a *VisionModel wrapping the transformer
        tower = getattr(tower, "vision_model", tower)
    layers = getattr(getattr(tower, "encoder", None), "layers", None)
    ok = (isinstance(getattr(tower, "post_layernorm", None), nn.LayerNorm) and isinstance(layers, nn.ModuleList)
          and len(layers) and all(hasattr(b, "self_attn") for b in layers)
          and isinstance(getattr(clip, "visual_projection", None), nn.Module))
    if not ok:
        raise ConfigError(f"TS2-Net needs a CLIP-style ViT (vision_model.encoder.layers[i].self_attn, post_layernorm, "
                          f"visual_projection); {type(clip).__name__} has none (SigLIP pools with an attention head, "
                          "ALIGN is a CNN): use the frozen-feature heads (ts2net, xpool, ...) with it")
    return tower, layers


def _tensor(out) -> torch.Tensor:
    """A block's output: a tensor (transformers 5.x) or a tuple whose first item is one (4.x)."""
    return out if isinstance(out, torch.Tensor) else out[0]


class _Scorer(nn.Module):
    """Token scores in [-1, 1]: local (per token) and global (class token) features, MLP, tanh (TS2-Net's scorer)."""

    def __init__(self, d: int):
        super().__init__()
        h = d // 2
        self.local = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, h, bias=False), nn.GELU())
        self.out = nn.Sequential(nn.Linear(2 * h, h, bias=False), nn.GELU(), nn.Linear(h, 1, bias=False), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., 1 + P, D) -> (..., 1 + P)
        h = self.local(x)
        return self.out(torch.cat([h, h[..., :1, :].expand_as(h)], dim=-1)).squeeze(-1)


class TS2NetViT(nn.Module):
    """A CLIP-style transformers model (``clip``, trained in place) with TS2-Net's token shift inside its last ViT
    blocks, token selection, temporal transformer and text-weighted frame aggregation (see the module docstring)."""

    def __init__(self, clip: nn.Module, config: TS2NetViTConfig):
        super().__init__()
        self.config = config
        self.clip = clip
        _, blocks = vision_blocks(clip)
        if config.shift_layers > len(blocks):
            raise ConfigError(f"TS2NetViTConfig: shift_layers {config.shift_layers} > the ViT's {len(blocks)} blocks")
        proj = int(clip.visual_projection.weight.shape[0])
        if proj != config.dim:
            raise ConfigError(f"TS2NetViTConfig: dim {config.dim} != the model's projection width {proj}")
        self._frames: int | None = None  # T while frame_embeddings runs (the shift hooks read it)
        self._hooks = [b.self_attn.register_forward_pre_hook(self._shift, with_kwargs=True)
                       for b in list(blocks)[len(blocks) - config.shift_layers:]]
        c, d = config, config.dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.scorer = _Scorer(d)
            self.token_pos = nn.Parameter(torch.randn(c.max_frames * (1 + c.select_k), d) * 0.01)
            layer = nn.TransformerEncoderLayer(d, c.n_heads, int(d * c.mlp_ratio), dropout=0.0, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.temporal = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
            self.logit_scale = nn.Parameter(torch.tensor(float(c.init_logit_scale)))

    # ------------------------------------------------------------------ token shift (inside the ViT)

    def _shift(self, module, args, kwargs):
        t = self._frames
        if t is None or t < 2 or self.config.shift_fraction <= 0:
            return None
        named = "hidden_states" in kwargs
        h = kwargs["hidden_states"] if named else args[0]
        bt, n, w = h.shape
        x = token_shift(h.reshape(bt // t, t, n, w), self.config.shift_fraction, self.config.shift_mode)
        x = x.reshape(bt, n, w)
        if named:
            return args, {**kwargs, "hidden_states": x}
        return (x, *args[1:]), kwargs

    def remove_shift(self) -> None:
        """Take the shift hooks off the CLIP model (it is then the plain model again)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    # ------------------------------------------------------------------ video side

    def frame_tokens(self, pixels: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, T, 1 + P, D): every token of every frame through the (shifted) ViT,
        ``post_layernorm`` and ``visual_projection``. With ``start > 0``, ``pixels`` is instead the hidden state
        (B, T, 1 + P, W) after the first ``start`` blocks (:meth:`prefix_hidden`), and only the rest are run."""
        if pixels.dim() != (4 if start else 5):
            raise ConfigError(f"TS2-Net: pixels must be (B, T, 3, H, W), got {tuple(pixels.shape)}")
        b, t = pixels.shape[:2]
        if t > self.config.max_frames:
            raise ConfigError(f"TS2-Net: {t} frames > max_frames {self.config.max_frames}")
        tower, layers = vision_blocks(self.clip)
        self._frames = t
        try:
            if start:
                h = pixels.flatten(0, 1)
                for layer in list(layers)[start:]:
                    h = _tensor(layer(h, None))
            else:
                out = tower(pixel_values=pixels.flatten(0, 1))
                h = out if isinstance(out, torch.Tensor) else getattr(out, "last_hidden_state", None)
                if h is None:
                    h = out[0]
        finally:
            self._frames = None
        tok = self.clip.visual_projection(tower.post_layernorm(h))
        return tok.reshape(b, t, *tok.shape[1:])

    @torch.no_grad()
    def prefix_hidden(self, pixels: torch.Tensor, blocks: int) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, T, 1 + P, W): the hidden state after the first ``blocks`` ViT blocks (no grad), to be
        cached when those blocks and the embeddings are frozen and unshifted (``blocks <= layers - shift_layers``)."""
        tower, layers = vision_blocks(self.clip)
        if blocks > len(layers) - self.config.shift_layers:
            raise ConfigError(f"TS2-Net: the first {blocks} blocks include shifted ones; cannot cache them")
        b, t = pixels.shape[:2]
        h = tower.pre_layrnorm(tower.embeddings(pixels.flatten(0, 1)))
        for layer in list(layers)[:blocks]:
            h = _tensor(layer(h, None))
        return h.reshape(b, t, *h.shape[1:])

    def select(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, 1 + P, D) -> (B, T, 1 + k, D): the class token and the ``select_k`` selected patch tokens."""
        cls, patches = tokens[:, :, :1], tokens[:, :, 1:]
        k = min(self.config.select_k, patches.shape[2])
        scores = self.scorer(tokens)[..., 1:]  # (B, T, P)
        if self.training and self.config.selection == "perturbed":
            ind = perturbed_topk(scores, k, self.config.perturb_samples, self.config.perturb_sigma)
        else:
            ind = F.one_hot(scores.topk(k, dim=-1).indices.sort(dim=-1).values, patches.shape[2]).to(patches.dtype)
        return torch.cat([cls, ind @ patches], dim=2)  # (B, T, k, P) @ (B, T, P, D)

    def frame_embeddings(self, pixels: torch.Tensor, start: int = 0) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, T, D) per-frame embeddings (unnormalised): shift, selection, temporal transformer
        with a residual, each frame's class-token output (``start``: see :meth:`frame_tokens`)."""
        x = self.select(self.frame_tokens(pixels, start))  # (B, T, 1 + k, D)
        b, t, n, d = x.shape
        flat = x.reshape(b, t * n, d)
        y = self.temporal(flat + self.token_pos[: t * n]) + flat
        return y.view(b, t, n, d)[:, :, 0]

    # ------------------------------------------------------------------ text side and scores

    def encode_text(self, **inputs) -> torch.Tensor:
        """Tokenizer outputs -> (B, D) L2-normalised text embeddings from the model's own text tower."""
        out = self.clip.get_text_features(**inputs)
        if not isinstance(out, torch.Tensor):
            out = getattr(out, "text_embeds", None) if getattr(out, "text_embeds", None) is not None \
                else out.pooler_output
        return F.normalize(out, dim=-1)

    def similarity(self, text: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B_t, D) texts, (B_v, T, D) frame embeddings -> (B_t, B_v) text-weighted cosine scores in [-1, 1]."""
        return text_weighted_similarity(text, frames, self.config.temperature, self.config.frame_norm)

    def describe(self) -> dict:
        return {"ts2net": asdict(self.config), "shifted_blocks": len(self._hooks)}




def save_ts2net_vit(model: TS2NetViT, directory, base: str, training: dict | None = None):
    """``directory/config.json`` (``{"model": "xmr-ts2net-vit", "base": SPEC, ...config[, "training"]}``) and
    ``model.safetensors`` (the whole CLIP under ``clip.*`` with its own key names, plus the TS2-Net parts). Loads as
    the encoder ``ts2net:DIR`` (:mod:`xmr.encoders.ts2net`), which builds ``base`` for its architecture, tokenizer
    and image processor and then loads these weights strictly."""
    from ..checkpoint import save_checkpoint

    if not base.startswith("hf:"):
        raise ConfigError(f"TS2-Net: base must be an hf: spec, got {base!r}")
    return save_checkpoint(directory, FORMAT, {"base": base, **asdict(model.config)}, model,
                           extra={"training": training} if training else None, metadata={"head": "ts2net-vit"})


__all__ = ["FORMAT", "TS2NetViT", "TS2NetViTConfig", "save_ts2net_vit", "vision_blocks"]
