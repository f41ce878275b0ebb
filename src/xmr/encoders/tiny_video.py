"""A small space-time video transformer on the ``tiny`` dual encoder's towers (what ``xmr train --mode full --model
tiny`` trains on a video data set, e.g. ``xmr synth videos``; ``--loss miles`` pre-trains it with masked visual
modelling).

* video tower: every one of ``frames`` frames is cut into the tiny ViT's patches (its ``patch_embed``); a patch
  token gets the tiny model's spatial position embedding plus a learned **temporal** position embedding of its
  frame; one class token and all ``frames x P`` patch tokens go through the tiny image blocks with **joint
  space-time attention** (every token attends to every token of every frame); the class token, final-normed and
  projected, is the video embedding. (Frozen-in-Time / MILES use divided space-time attention blocks; at these sizes
  joint attention is cheap and sees the same context.)
* text tower: the tiny byte-level text transformer, unchanged.

:meth:`TinyVideoDualEncoder.video_tokens` takes an optional (B, T, P) boolean mask: masked patch embeddings are
replaced by a given mask embedding before position embeddings are added (BEiT-style corruption), which is how
:mod:`xmr.train.losses.miles` builds its corrupted video.

A trained model is saved inside a ``trained:`` folder (mode ``tiny_video``) and loads as :class:`TinyVideoEncoder`:
texts through ``encode_text``, videos (paths) through ``encode_videos`` (``frames`` frames spread uniformly over each
clip), or already decoded clips through ``encode_clips`` (``Capabilities.clips``: how ``xmr eval`` and ``xmr index``
read videos with it, :mod:`xmr.video.clips`; one vector per clip or moment window). It is not an image encoder and not
a frame + temporal-head ``video:`` encoder: images are refused.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import config_from_dict
from ..errors import ConfigError
from .base import Capabilities, Encoder
from .tiny import TinyConfig, TinyDualEncoder, tokenize


@dataclass(frozen=True)
class TinyVideoConfig:
    tiny: dict  # TinyConfig fields of the towers
    frames: int = 4  # frames per clip (uniformly spread); the temporal position embedding has this many rows

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"frames": (1, 256)}

    def __post_init__(self):
        if not 1 <= self.frames <= 256:
            raise ConfigError(f"TinyVideoConfig: frames must be in 1..256, got {self.frames}")

    @property
    def tiny_config(self) -> TinyConfig:
        return TinyConfig.from_dict(dict(self.tiny))

    @classmethod
    def from_dict(cls, d: dict) -> "TinyVideoConfig":
        return config_from_dict(cls, d)


class TinyVideoDualEncoder(nn.Module):
    """Video (B, T, 3, S, S) normalised pixels and (B, L) byte ids -> unnormalised (B, dim) embeddings."""

    def __init__(self, config: TinyVideoConfig, init_state: dict | None = None):
        super().__init__()
        self.config = config
        tc = config.tiny_config
        self.net = TinyDualEncoder(tc)
        if init_state is not None:
            self.net.load_state_dict(init_state)
        self.time_pos = nn.Parameter(torch.zeros(config.frames, tc.width))  # zero start: frames look alike at first

    @property
    def grid(self) -> int:
        """Patches per frame side."""
        c = self.net.config
        return c.image_size // c.patch_size

    @property
    def width(self) -> int:
        return self.net.config.width

    def video_tokens(self, pixels: torch.Tensor, mask: torch.Tensor | None = None,
                     mask_embedding: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 3, S, S) -> (B, 1 + T * P, width): class token, then the patch tokens frame by frame (row-major
        within a frame), final-normed. ``mask`` (B, T, P) True: that patch's embedding is replaced by
        ``mask_embedding`` (width,) before the position embeddings are added."""
        b, t = pixels.shape[:2]
        if t != self.config.frames:
            raise ConfigError(f"the video model takes {self.config.frames} frames per clip, got {t}")
        net = self.net
        x = net.patch_embed(pixels.flatten(0, 1)).flatten(2).transpose(1, 2)  # (B*T, P, width)
        p = x.shape[1]
        x = x.view(b, t, p, -1)
        if mask is not None:
            if mask_embedding is None:
                raise ConfigError("video_tokens: a mask needs a mask embedding")
            x = torch.where(mask.unsqueeze(-1), mask_embedding.to(x.dtype).view(1, 1, 1, -1), x)
        x = x + net.image_pos[1:].view(1, 1, p, -1) + self.time_pos.view(1, t, 1, -1)
        cls = (net.cls_token + net.image_pos[0]).expand(b, 1, -1)
        x = net.image_ln_pre(torch.cat([cls, x.flatten(1, 2)], dim=1))
        for blk in net.image_blocks:
            x = blk(x)
        return net.image_ln_post(x)

    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.image_proj(self.video_tokens(pixels)[:, 0])

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.net.encode_text(ids)


def clip_pixels(frames: Sequence, preprocess) -> np.ndarray:
    """(T, 3, S, S) float32: one clip's decoded frames (PIL images or (H, W, 3) uint8 arrays, in time order), each
    through ``preprocess`` (an ImagePreprocess). The one preprocessing of clips: training (:func:`video_pixels`) and
    ``encode_clips`` (xmr eval / xmr index) both use it."""
    from PIL import Image

    out = np.zeros((len(frames), 3, preprocess.crop, preprocess.crop), np.float32)
    for k, f in enumerate(frames):
        out[k] = preprocess(f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f)))
    return out


def video_pixels(paths: Sequence[str], frames: int, preprocess) -> np.ndarray:
    """(N, T, 3, S, S) float32: ``frames`` frames at the centres of ``frames`` equal parts of each clip (TSN-style,
    :func:`xmr.media.video.sample_frames`, native resolution), each through ``preprocess`` (:func:`clip_pixels`).
    Raises MediaError for an unreadable clip (no frame is ever made up)."""
    from ..errors import CorruptMediaError
    from ..media.video import sample_frames

    out = np.zeros((len(paths), frames, 3, preprocess.crop, preprocess.crop), np.float32)
    for i, p in enumerate(paths):
        try:
            arr = sample_frames(p, frames)
        except ValueError as e:  # an empty time window: a clip of no duration
            raise CorruptMediaError(f"{p}: no frames to sample ({e})") from None
        if arr is None or len(arr) != frames:
            raise CorruptMediaError(f"{p}: decoded {0 if arr is None else len(arr)} of {frames} frames")
        out[i] = clip_pixels(arr, preprocess)
    return out


class TinyVideoEncoder(Encoder):
    """A trained :class:`TinyVideoDualEncoder` (``trained:DIR`` with mode ``tiny_video``): ``encode_text`` and
    ``encode_videos`` (paths; L2-normalised)."""

    capabilities = Capabilities(images=False, clips=True)

    def __init__(self, model: TinyVideoDualEncoder, device=None):
        from ..media.image import ImagePreprocess
        from ._device import resolve_device

        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.dim = model.net.config.dim
        c = model.net.config
        self.preprocess = ImagePreprocess(size=c.image_size, crop=c.image_size, mean=c.mean, std=c.std)
        self.clip_frames = int(model.config.frames)  # frames per clip (Capabilities.clips)

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(tokenize(texts, self.model.net.config.context_length).to(self.device))

    def _encode_image_batch(self, images):
        raise ConfigError("this trained:DIR is a tiny space-time video model: it embeds whole video clips "
                          f"({self.clip_frames} frames each), not images or single frames; give it videos (xmr eval on a "
                          "video data set, xmr index on a folder of videos, xmr search --type video)")

    def video_pixels(self, paths: Sequence[str]) -> torch.Tensor:
        """(N, T, 3, S, S) float32: ``frames`` frames spread uniformly over each clip, preprocessed."""
        return torch.from_numpy(video_pixels(paths, self.model.config.frames, self.preprocess))

    @torch.no_grad()
    def encode_videos(self, paths: Sequence[str], batch_size: int = 16) -> np.ndarray:
        out = []
        for s in range(0, len(paths), batch_size):
            x = self.video_pixels(list(paths[s: s + batch_size])).to(self.device)
            out.append(F.normalize(self.model.encode_video(x), dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.no_grad()
    def encode_clips(self, clips: Sequence[Sequence], batch_size: int = 16) -> np.ndarray:
        """(N, dim) L2-normalised vectors of decoded clips: each ``clip_frames`` frames (PIL images or uint8 arrays)
        in time order, preprocessed as in training (:func:`clip_pixels`)."""
        for i, c in enumerate(clips):
            if len(c) != self.clip_frames:
                raise ConfigError(f"{self.spec}: clip {i} has {len(c)} frames; this model takes {self.clip_frames}")
        out = []
        for s in range(0, len(clips), batch_size):
            x = torch.from_numpy(np.stack([clip_pixels(c, self.preprocess) for c in clips[s: s + batch_size]]))
            out.append(F.normalize(self.model.encode_video(x.to(self.device)), dim=-1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def describe(self) -> dict:
        return {**super().describe(), "video": asdict(self.model.config)}


__all__ = ["TinyVideoConfig", "TinyVideoDualEncoder", "TinyVideoEncoder", "clip_pixels", "video_pixels"]
