"""``ts2net:DIR``: a TS2-Net trained as the paper trains it (``xmr train-head --head ts2net-vit``): a fine-tuned
CLIP-style ``hf:`` model with token shift inside its last ViT blocks, token selection, a temporal transformer, and
text-weighted frame aggregation (:mod:`xmr.heads.ts2net_vit`).

``DIR`` holds ``config.json`` (``"model": "xmr-ts2net-vit"``, ``"base"``: the ``hf:`` spec it was fine-tuned from)
and ``model.safetensors``. Loading builds ``base`` (architecture, tokenizer, image processor; so it must still be
loadable here), puts the shift hooks on its ViT and loads the fine-tuned weights strictly.

* texts: the fine-tuned text tower; images: the fine-tuned image tower (one image is a one-frame clip: no shift);
* videos: frames go through the ViT **together** (the shift needs the neighbouring frames), in consecutive clips of
  ``num_frames`` (what it was trained on; ``xmr eval`` decodes exactly that many uniform frames per video, an index's
  fps grid is cut into such clips, so neighbours there are fps steps apart), giving one embedding per frame;
* the score of a (text, video) pair is the text-weighted aggregation of those frame embeddings (query-dependent):
  an index stores meanP of the frames as the first-stage vector plus the frame embeddings, and search re-scores the
  top ``--candidates`` exactly (the ``head`` stage); ``xmr eval`` scores every pair exactly.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from . import ENCODERS
from .video import VideoEncoder


class TS2NetEncoder(VideoEncoder):
    """A fine-tuned ``hf:`` encoder + :class:`~xmr.heads.ts2net_vit.TS2NetViT` as a video encoder."""

    def __init__(self, base, model, directory: str):
        from ..heads.textweighted import TextWeightedConfig, TextWeightedHead

        c = model.config
        head = TextWeightedHead(TextWeightedConfig(dim=c.dim, max_frames=c.max_frames, num_frames=c.num_frames,
                                                   temperature=c.temperature, frame_norm=c.frame_norm))
        self.ts2net = model.eval()
        super().__init__(base, head, directory)

    @torch.no_grad()
    def encode_frames(self, images, batch_size: int = 32) -> np.ndarray:
        """Frames (PIL images or paths) of one video, in time order -> (N, D) L2-normalised frame embeddings, computed
        in consecutive clips of ``num_frames`` frames (the token shift mixes neighbours within a clip)."""
        from ..media.image import load_image

        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        t = self.ts2net.config.num_frames
        out = []
        for s in range(0, len(images), t):
            ims = [load_image(im) for im in images[s: s + t]]
            px = self.base.image_processor(images=ims, return_tensors="pt")["pixel_values"]
            px = px.to(self.device, dtype=self.base.model.dtype)
            out.append(F.normalize(self.ts2net.frame_embeddings(px[None])[0], dim=-1).float().cpu().numpy())
        return np.concatenate(out)

    def describe(self) -> dict:
        return {**super().describe(), **self.ts2net.describe()}


@ENCODERS.register("ts2net", help="TS2-Net fine-tuned as in the paper (xmr train-head --head ts2net-vit): "
                   "ts2net:DIR (docs/video_heads.md)")
def _make_ts2net(arg: str | None, device: str | None = None) -> TS2NetEncoder:
    from ..checkpoint import load_checkpoint
    from ..config import config_from_dict
    from ..heads.ts2net_vit import FORMAT, TS2NetViT, TS2NetViTConfig
    from . import create_encoder

    if not arg:
        raise ConfigError("ts2net needs a folder: ts2net:DIR (train one with xmr train-head --head ts2net-vit "
                          "--encoder hf:MODEL --out DIR)")
    ckpt = load_checkpoint(arg, FORMAT, f"ts2net:{arg}", what="TS2-Net (xmr-ts2net-vit) config",
                           hint="train one with `xmr train-head --head ts2net-vit --encoder hf:MODEL --out DIR`")
    base_spec = ckpt.config.pop("base", None)
    training = ckpt.config.pop("training", None)
    if not isinstance(base_spec, str) or not base_spec.startswith("hf:"):
        raise ConfigError(f"ts2net:{arg}: config.json 'base' must be the hf: spec it was fine-tuned from, got "
                          f"{base_spec!r}")
    cfg = config_from_dict(TS2NetViTConfig, ckpt.config)
    base = create_encoder(base_spec, device=device)
    model = ckpt.load_into(TS2NetViT(base.model, cfg)).to(base.device).eval()
    model.provenance = training
    return TS2NetEncoder(base, model, arg)
