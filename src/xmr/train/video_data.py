"""Video training for ``xmr train`` (``--mode full`` on a data set of clips, e.g. ``xmr synth videos`` output):
the model is a :class:`TinyVideoModel` (the space-time tiny transformer of :mod:`xmr.encoders.tiny_video`) and its
inputs are ``--frames`` frames per clip, decoded and preprocessed once and kept in memory.

``--model`` says where the weights start:

* ``tiny`` — a fresh random initialisation (``--tiny-config`` for its sizes, ``--seed``);
* ``tiny:<dir>`` — an image-text ``tiny`` model: its towers are reused, the temporal position embedding starts at 0;
* ``trained:<dir>`` — a video run's output (``mode: tiny_video``), e.g. MILES pre-training to fine-tune from; its
  ``frames`` must be ``--frames``.
"""
from __future__ import annotations

from dataclasses import asdict, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders.tiny_video import TinyVideoConfig, TinyVideoDualEncoder, video_pixels
from ..errors import ConfigError
from .data import PairData, build_pairs


class TinyVideoModel(nn.Module):
    """Inputs: (B, T, 3, S, S) normalised frames and (B, L) byte token ids. ``encode_image`` embeds a clip (the
    loop and every loss see clips where image runs see images); ``video_tokens`` exposes the space-time tokens."""

    mode = "tiny_video"

    def __init__(self, config: TinyVideoConfig, init_state: dict | None = None):
        super().__init__()
        self.net = TinyVideoDualEncoder(config)
        if init_state is not None:
            self.net.load_state_dict(init_state)

    @property
    def dim(self) -> int:
        return self.net.net.config.dim

    @property
    def token_width(self) -> int:
        return self.net.width

    @property
    def grid(self) -> int:
        return self.net.grid

    @property
    def frames(self) -> int:
        return self.net.config.frames

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net.encode_video(x), dim=-1)

    def encode_text(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net.encode_text(x), dim=-1)

    def video_tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                     mask_embedding: torch.Tensor | None = None) -> torch.Tensor:
        return self.net.video_tokens(x, mask, mask_embedding)

    def fresh(self, seed: int) -> "TinyVideoModel":
        c = self.net.config
        return TinyVideoModel(replace(c, tiny={**c.tiny, "seed": seed}))

    def describe(self) -> dict:
        return {"mode": self.mode, "video": asdict(self.net.config)}

    def save(self, directory, training: dict, heads: dict | None = None):
        from ..encoders.trained import save_trained

        return save_trained(directory, self.mode, {"video": asdict(self.net.config)}, self.net, training, heads)


def build_video_model(cfg) -> TinyVideoModel:
    """The model ``cfg.model`` names (module docstring)."""
    name, _, arg = cfg.model.partition(":")
    if name == "tiny":
        from ..encoders.tiny import TinyConfig, TinyDualEncoder

        if arg:
            if cfg.tiny:
                raise ConfigError("--tiny-config applies to a fresh `tiny`; a tiny:<dir> start keeps its own config")
            start = TinyDualEncoder.load(arg)
            model = TinyVideoModel(TinyVideoConfig(asdict(start.config), cfg.clip_frames))
            model.net.net.load_state_dict(start.state_dict())
            return model
        tc = TinyConfig.from_dict({**cfg.tiny, "seed": cfg.seed})
        return TinyVideoModel(TinyVideoConfig(asdict(tc), cfg.clip_frames))
    if name == "trained" and arg:
        from ..encoders.trained import load_trained_module

        mode, saved, module = load_trained_module(arg)
        if mode != "tiny_video":
            raise ConfigError(f"--model {cfg.model}: a {mode} model, not a video model; start video training from "
                              "tiny, tiny:<dir> or a trained:<dir> written by a video run")
        if cfg.tiny:
            raise ConfigError("--tiny-config applies to a fresh `tiny`; a trained:<dir> start keeps its own config")
        if module.config.frames != cfg.clip_frames:
            raise ConfigError(f"--model {cfg.model} was trained on {module.config.frames} frames per clip; give "
                              f"--frames {module.config.frames}")
        return TinyVideoModel(module.config, module.state_dict())
    raise ConfigError(f"--model {cfg.model}: video data sets train the tiny space-time transformer from tiny, "
                      "tiny:<dir> or trained:<dir> (a video run); heads on frozen frame features are trained with "
                      "`xmr train-head`")


def video_pairs(model: TinyVideoModel, dataset, with_labels: bool = True) -> PairData:
    """:class:`PairData` of a video data set: (N, T, 3, S, S) frames and (T_c, L) token ids."""
    from ..encoders.tiny import tokenize
    from ..media.image import ImagePreprocess

    c = model.net.net.config
    pre = ImagePreprocess(size=c.image_size, crop=c.image_size, mean=c.mean, std=c.std)
    pixels = torch.from_numpy(video_pixels(list(dataset.media), model.frames, pre))
    return build_pairs(dataset, pixels, tokenize(dataset.texts, c.context_length), with_labels=with_labels)


def build_video_student(cfg, train_ds, eval_ds) -> tuple[TinyVideoModel, PairData, PairData | None]:
    if cfg.mode != "full":
        raise ConfigError(f"--mode {cfg.mode}: video data sets train a tiny space-time transformer with --mode full "
                          "(heads on frozen frame features: `xmr train-head`)")
    model = build_video_model(cfg)
    tr = video_pairs(model, train_ds)
    ev = video_pairs(model, eval_ds, with_labels=False) if eval_ds is not None else None
    return model, tr, ev


__all__ = ["TinyVideoModel", "build_video_model", "build_video_student", "video_pairs"]
