"""The audio expert: a video's sound track as per-window vectors in the index model's text space.

``xmr index DIR --experts audio`` (the bundled tower) or ``--experts audio:TOWER_DIR`` (a tower trained with
``xmr train-audio``) decodes each video's first audio stream (:func:`xmr.media.audio.load_audio`, PyAV, resampled
to the tower's rate, the first ``max_seconds``), cuts it into windows (``window_seconds`` every ``hop_seconds``),
and embeds each window's log-mel with the audio tower (:mod:`xmr.encoders.audio_tower`). Each window is one row
(field ``audio``, start, end, text ``audio 0.0-2.0 s``) whose vector is the tower's output, not a text embedding;
search scores the query against it like any expert row, so an audio hit sets the result's start / end: a moment.

A tower maps into one model's text space: the expert refuses (whole run, :class:`~xmr.errors.ConfigError`) an
index built with another model, naming the fix. The bundled tower (``xmr/assets/audio_tower``) was trained for
``concept`` (the default model) on the synthetic sound events of :mod:`xmr.synth.sounds` only: it knows beeps,
hums, chirps, noise bursts and knocks, nothing else (docs/experts.md).

Bad input: a video without an audio track, or whose audio does not decode, raises
:class:`~xmr.errors.ExpertSkip` (``audio: has no audio track``); the item keeps its visual embedding.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ExpertSkip, MediaError
from ..registries import EXPERTS
from .base import Expert, ExpertText

BUNDLED = Path(__file__).resolve().parent.parent / "assets" / "audio_tower"


@EXPERTS.register("audio", help="a video's sound track, per window, through an audio tower into the text space "
                                "(audio:DIR for a tower trained with xmr train-audio)")
class AudioExpert(Expert):
    name = "audio"
    version = "1"
    media_types = ("video",)

    @dataclass
    class Config:
        tower: str = ""  # a tower folder (config.json + model.safetensors); "" = the bundled one (model concept)
        max_seconds: float = 600.0  # audio beyond this is not read

    def __init__(self, config=None):
        super().__init__(config)
        self._embedder = None

    @classmethod
    def from_arg(cls, arg: str) -> "AudioExpert":
        return cls(cls.Config(tower=str(Path(arg).expanduser().absolute())))

    @property
    def embedder(self):
        if self._embedder is None:
            from ..encoders.audio_tower import AudioEmbedder

            d = self.config.tower or str(BUNDLED)
            if not Path(d).is_dir():
                raise ConfigError(f"audio tower {d} is not a folder; train one with xmr train-audio --model SPEC "
                                  f"--out DIR and index with --experts audio:DIR")
            self._embedder = AudioEmbedder.load(d)
        return self._embedder

    def signature(self, path: str, sha256: str) -> str:
        # the tower's weights enter the signature through their size and mtime: a retrained tower re-runs
        wpath = Path(self.config.tower or BUNDLED) / "model.safetensors"
        try:
            st = wpath.stat()
            tag = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            tag = "missing"
        return super().signature(path, sha256) + f"|tower:{tag}"

    def check_model(self, model_spec: str, dim: int) -> None:
        """Refuse an index whose model is not the one the tower maps into (its vectors would mean nothing)."""
        from ..encoders import absolute_spec

        cfg = self.embedder.config
        which = f"audio tower {self.config.tower}" if self.config.tower else "the bundled audio tower"
        if absolute_spec(cfg.target_model) != absolute_spec(model_spec) or cfg.dim != dim:
            raise ConfigError(f"{which} maps sound into the text space of model {cfg.target_model!r} "
                              f"({cfg.dim}-d), and this index uses {model_spec!r} ({dim}-d): train a tower for it "
                              f"with xmr train-audio --model {model_spec} --out DIR, then --experts audio:DIR")

    def extract(self, path: str, media_type: str) -> list[ExpertText]:
        from ..media.audio import load_audio

        emb = self.embedder
        try:
            wave = load_audio(path, emb.config.sr, self.config.max_seconds)
        except MediaError as e:
            raise ExpertSkip(path, f"audio: {e.reason}") from None
        return [ExpertText(f"audio {s:.1f}-{e:.1f} s", "audio", float(s), float(e), None, vector=v)
                for s, e, v in emb.embed_wave(wave)]
