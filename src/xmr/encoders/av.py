"""``eao:DIR`` and ``eclipse:DIR``: the audio-visual models of :data:`xmr.registries.MULTIMODAL_MODELS` as index
models, so ``xmr index`` / ``xmr search`` / ``xmr serve`` search videos by their picture and their sound.

``DIR`` is a folder ``xmr train-av --model eao|eclipse`` wrote (config.json + model.safetensors). The model's own
text side encodes queries (its vocabulary: words it never saw in training are unknown); a video is embedded from
its frames and sound track (:mod:`xmr.video.av`: the same tokens the model was trained on; the whole file and each
index window); an image is a one-frame video without sound (Everything at Once: the video modality alone;
ECLIPSE: its video-only pathway), so a folder of images and videos indexes as one gallery and ``--image``
queries work, but these models were trained on clips: expect little from images.

* ``eao``: Everything at Once (:class:`xmr.heads.eao.EverythingAtOnce`): a video with sound is the fused
  video+audio embedding, one without an audio track the video embedding (the model fuses any subset);
* ``eclipse``: ECLIPSE (:class:`xmr.heads.eclipse.Eclipse`): sparse frames with dense audio through its
  audiovisual block; without an audio track the block's video-only pathway.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import ConfigError
from . import ENCODERS
from .base import Capabilities, Encoder

IMAGE_SIZE = 64  # an image is downscaled (area average) so its shorter side is at most this, as video frames are


class AvEncoder(Encoder):
    """A MULTIMODAL_MODELS model (eao / eclipse) as an index model: text, images (one frame, no sound), and video
    files with sound through :meth:`encode_av`."""

    capabilities = Capabilities(sound=True)

    def __init__(self, model, directory: str):
        import torch

        self.model = model.eval()
        self.config = model.config
        self.directory = directory
        self.dim = int(model.config.embed_dim)
        self.device = torch.device("cpu")

    def _encode_text_batch(self, texts: list[str]):
        return self.model.encode(text=texts)

    def _encode_image_batch(self, images: list[Image.Image]):
        from ..heads.eao import frame_tokens

        side = int(round(((self.config.video_dim - 1) / 3) ** 0.5))
        toks = []
        for im in images:
            im = im.convert("RGB")
            scale = IMAGE_SIZE / min(im.size)
            if scale < 1:
                im = im.resize((max(side, round(im.width * scale)), max(side, round(im.height * scale))), Image.BOX)
            toks.append(frame_tokens(np.asarray(im)[None], side=side, max_tokens=1))
        return self.model.encode(video=np.stack(toks))

    def encode_av(self, video: np.ndarray, audio: np.ndarray | None) -> np.ndarray:
        """(B, dim) unit vectors of clips' tokens: ``video`` (B, k, video_dim), ``audio`` (B, m, audio_dim) or None
        (no sound: the model's video-only embedding)."""
        import torch

        v = np.asarray(video, np.float32)
        if v.ndim != 3 or v.shape[2] != self.config.video_dim:
            raise ConfigError(f"{self.spec}: video tokens must be (B, k, {self.config.video_dim}), got {v.shape}")
        a = None if audio is None else np.asarray(audio, np.float32)
        if a is not None and (a.ndim != 3 or a.shape[0] != v.shape[0] or a.shape[2] != self.config.audio_dim):
            raise ConfigError(f"{self.spec}: audio tokens must be ({v.shape[0]}, m, {self.config.audio_dim}), got "
                              f"{a.shape}")
        with torch.no_grad():
            out = self.model.encode(video=torch.from_numpy(v), audio=None if a is None else torch.from_numpy(a))
        return out.numpy().astype(np.float32)

    def describe(self) -> dict:
        return {**super().describe(), "model": self.model.name, "frames": self.config.frames,
                "chunks": self.config.chunks}


def _loader(name: str):
    def factory(arg: str | None, device: str | None = None) -> Encoder:
        if not arg:
            raise ConfigError(f"{name}: needs the folder of a trained model, e.g. {name}:runs/{name} (train one with "
                              f"xmr train-av --model {name} --captions captions.jsonl --out runs/{name})")
        from ..registries import MULTIMODAL_MODELS, load_all

        load_all("multimodal")
        return AvEncoder(MULTIMODAL_MODELS.get(name).load(arg), arg)
    return factory


ENCODERS.register("eao", help="Everything at Once (eao:DIR from xmr train-av): videos embedded from their frames "
                  "and sound, the model's own text tower for queries")(_loader("eao"))
ENCODERS.register("eclipse", help="ECLIPSE (eclipse:DIR from xmr train-av): sparse frames + dense audio, the model's "
                  "own text tower for queries")(_loader("eclipse"))

__all__ = ["AvEncoder"]
