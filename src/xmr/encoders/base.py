"""The encoder interface every model implements.

An encoder maps texts and images into one shared space. Subclasses implement two batch methods; this base class
adds batching, a progress bar, ``torch.no_grad``, float32 output and L2 normalisation.

torch is not imported here: an encoder that runs without it (``concept`` on ONNX Runtime) keeps a text search free of
torch's import. ``torch.no_grad`` is entered when torch is loaded (every torch encoder imports it when built).
"""
from __future__ import annotations

import contextlib
import logging
import sys
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Sequence

import numpy as np
from PIL import Image

from .._arrays import l2_normalize as l2_normalize
from ..errors import ConfigError
from ..media.image import ImageLike, load_image

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def _no_grad():
    """``torch.no_grad()`` when torch is loaded (a tensor can only exist then), else nothing to switch off."""
    torch = sys.modules.get("torch")
    return torch.no_grad() if torch is not None else contextlib.nullcontext()


class _NoBar:
    """What a disabled bar does (nothing), without importing tqdm (0.1-0.6 s) for a one-query search."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1) -> None:
        pass


def _progress(total: int, desc: str, show: bool | None):
    disable = (not show) if show is not None else (total < 64 or log.getEffectiveLevel() > logging.INFO)
    if disable:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item", disable=disable, leave=False)


@dataclass(frozen=True)
class Capabilities:
    """What an encoder can do, declared on its class (and narrowed per instance where the loaded weights decide, e.g.
    an ``hf:`` SigLIP has no class-token patch tokens). Callers ask ``encoder.capabilities.patch_tokens`` or
    :meth:`Encoder.require` instead of probing for methods."""

    text: bool = True  # encode_text(texts) -> (N, dim)
    images: bool = True  # encode_images(images) -> (N, dim)
    patch_tokens: bool = False  # encode_image_tokens(images) -> (B, 1 + P, token_width), class token first
    text_tokens: bool = False  # encode_text_tokens(texts) -> ((B, L, token_width), mask (B, L))
    video: bool = False  # a temporal head pools frames: encode_frames(images) + video_pool(feats, times)
    video_rescoring: bool = False  # the head scores (query, frames) itself: indexes keep frames, search re-scores
    video_frames: int | None = None  # the head only ever looks at this many uniform frames of a clip (the LEAN
    # student): an index decodes just those (FramePlan.uniform) instead of its fps grid; None: the index's grid
    sound: bool = False  # a video's frames and sound track embedded together (eao:DIR, eclipse:DIR):
    # encode_av(video tokens (B, k, dv), audio tokens (B, m, da) or None) -> (B, dim); xmr.video.av makes the tokens
    clips: bool = False  # a whole clip embedded at once from `clip_frames` uniformly spread frames (trained:DIR of a
    # video run, e.g. MILES): encode_clips([[frame, ...], ...]) -> (N, dim); xmr.video.clips decodes the frames
    languages: tuple[str, ...] = ("en",)  # languages encode_text handles (the tower's own, then acquired ones: concept
    # adds de, fr, cs through MLA acquirers); "*": many (a multilingual tower); encode_text(lang=) must be one of them

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RescoreDefault:
    """The re-scoring a model recommends for its TEXT queries (``Encoder.rescore_default``): what ``xmr search``,
    ``xmr serve`` and ``xmr eval`` apply when the user gives no ``--rescore`` (``--rescore none`` turns it off).

    ``names``: re-scorers in order (``("qbnorm",)``); ``params``: per name; ``bank``: a querybank source, usually a
    bundled one's name (``multi30k-en-train-5k``, :func:`xmr.paths.bundled_querybank`)."""

    names: tuple[str, ...]
    bank: str
    params: dict = field(default_factory=dict)

    def label(self) -> str:
        """``qbnorm (model default, bank multi30k-en-train-5k)``: what results and the CLI say."""
        return f"{','.join(self.names)} (model default, bank {self.bank})"


#: what each capability is needed for, in refusal messages
_CAPABILITY_METHODS = {"text": "encode_text", "images": "encode_images", "patch_tokens": "encode_image_tokens",
                       "text_tokens": "encode_text_tokens", "video": "a temporal head (video:<spec>+<head>)",
                       "video_rescoring": "a head that re-scores (video:<spec>+xpool@DIR, +prototypes@DIR)",
                       "sound": "an audio-visual model (eao:DIR, eclipse:DIR from xmr train-av)",
                       "clips": "a whole-clip video model (trained:DIR of xmr train --mode full on videos)"}


class Encoder(ABC):
    """Dual encoder: ``encode_text`` and ``encode_images`` return L2-normalised float32 arrays of width ``dim``.

    Subclasses declare what else they can do in ``capabilities`` (:class:`Capabilities`)."""

    #: declared on the class; an instance may narrow it (``self.capabilities = replace(...)``)
    capabilities: ClassVar[Capabilities] = Capabilities()

    #: the spec string this encoder was created from (stored in indexes and eval fingerprints)
    spec: str = ""
    #: embedding width
    dim: int = 0
    #: device the model runs on: a ``torch.device``, or ``"cpu"`` for models that run without torch
    device: Any = "cpu"

    @abstractmethod
    def _encode_text_batch(self, texts: list[str]) -> np.ndarray | torch.Tensor:
        """(B,) texts -> (B, dim) unnormalised features."""

    @abstractmethod
    def _encode_image_batch(self, images: list[Image.Image]) -> np.ndarray | torch.Tensor:
        """(B,) RGB PIL images -> (B, dim) unnormalised features."""

    def encode_text(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        show_progress: bool | None = None,
        normalize: bool = True,
        lang: str | None = None,
    ) -> np.ndarray:
        """Encode texts -> (N, dim) float32, L2-normalised unless ``normalize=False``.

        ``lang`` (an ISO 639-1 code) says which language the texts are in; it must be one of
        ``capabilities.languages`` (ConfigError listing them otherwise). None: the encoder decides (a multilingual
        ``concept`` detects each text's language; see :meth:`text_languages`)."""
        if isinstance(texts, str):
            texts = [texts]
        texts = [str(t) for t in texts]
        if lang is not None:
            lang = self.check_language(lang)
        # length-sorted batches waste less padding; results are put back in input order
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with _no_grad(), _progress(len(texts), "encode text", show_progress) as bar:
            for s in range(0, len(texts), batch_size):
                idx = order[s : s + batch_size]
                batch = [texts[i] for i in idx]
                out[idx] = _to_numpy(self._encode_text_batch(batch) if lang is None
                                     else self._encode_text_batch_in(batch, lang))
                bar.update(len(idx))
        return l2_normalize(out) if normalize else out

    def _encode_text_batch_in(self, texts: list[str], lang: str) -> np.ndarray | torch.Tensor:
        """(B,) texts known to be in ``lang`` (checked against ``capabilities.languages``) -> (B, dim). Default: the
        encoder has one text path for all its languages."""
        return self._encode_text_batch(texts)

    def check_language(self, lang: str) -> str:
        """``lang`` lower-cased if this encoder's text tower handles it, else ConfigError listing the ones it does."""
        code = str(lang).strip().lower()
        langs = self.capabilities.languages
        if "*" in langs or code in langs:
            return code
        raise ConfigError(f"language {lang!r} is not supported by encoder {self.spec or type(self).__name__!r}; "
                          f"supported: {', '.join(langs)}" + ("" if len(langs) > 1 else
                          " (the default concept model adds de, fr, cs; see docs/multilingual.md)"))

    def text_languages(self, texts: Sequence[str], lang: str | None = None) -> list[dict]:
        """Per text, which language its tower is and how that was decided (``{"lang", "how", ...}``), as
        :meth:`encode_text` routes it. Default: one text tower, nothing detected."""
        code = self.check_language(lang) if lang else None
        return [{"lang": code or self.capabilities.languages[0], "how": "explicit" if code else "default"}
                for _ in texts]

    def encode_images(
        self,
        images: Sequence[ImageLike],
        batch_size: int = 32,
        show_progress: bool | None = None,
        normalize: bool = True,
    ) -> np.ndarray:
        """Encode images (paths or PIL images) -> (N, dim) float32, L2-normalised.

        A path that cannot be decoded raises :class:`~xmr.errors.MediaError` (callers that index folders load
        images first and skip bad ones; nothing here substitutes a placeholder).
        """
        images = list(images)
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        with _no_grad(), _progress(len(images), "encode images", show_progress) as bar:
            for s in range(0, len(images), batch_size):
                batch = [load_image(x) for x in images[s : s + batch_size]]
                out[s : s + len(batch)] = _to_numpy(self._encode_image_batch(batch))
                bar.update(len(batch))
        return l2_normalize(out) if normalize else out

    # ---- split image encoding: CPU preprocessing (any thread) + the model (one thread) -----------------------------
    #: smallest side (pixels) this encoder's image preprocessing needs; loaders may decode JPEGs at a reduced scale
    #: (``load_image(draft=...)``) down to it. None: decode at full size.
    image_draft_size: ClassVar[int | None] = None
    #: True when :meth:`preprocess_images` turns an image into a compact model input (worth building ahead in
    #: another thread, the decoded image dropped); False (default): the "input" is the decoded image itself, so an
    #: indexer decodes batch by batch instead, within its pixel budget
    split_preprocessing: ClassVar[bool] = False

    def preprocess_images(self, images: list[Image.Image]) -> Sequence[Any]:
        """The model input of each image (one entry per image): pure CPU work, safe to run in another thread while
        the model runs (the indexer overlaps it with inference). Default: the images themselves."""
        return list(images)

    def encode_preprocessed(self, items: list[Any]) -> np.ndarray:
        """(B, dim) float32 L2-normalised embeddings of :meth:`preprocess_images` entries (gathered from several
        calls); equal to ``encode_images`` of the same images."""
        return self.encode_images(items, batch_size=max(1, len(items)), show_progress=False)

    def require(self, capability: str, why: str) -> None:
        """Raise ConfigError saying that ``why`` needs ``capability``, which this encoder does not have."""
        if not getattr(self.capabilities, capability):
            raise ConfigError(f"{why} needs {_CAPABILITY_METHODS.get(capability, capability)}, which encoder "
                              f"{self.spec or type(self).__name__!r} does not provide")

    #: the re-scoring this model recommends for text queries (:class:`RescoreDefault`); None: none (most models)
    rescore_default: ClassVar[RescoreDefault | None] = None

    def encode_bank_texts(self, texts: Sequence[str], info: dict, show_progress: bool | None = None
                          ) -> tuple[np.ndarray, dict]:
        """(N, dim) unit embeddings of a querybank's texts (``info``: what :func:`xmr.rescore.read_bank_texts`
        says about the source) and a record of how they were made. Default: :meth:`encode_text`; ``concept`` reads a
        bundled bank's shipped MiniLM embeddings instead (:mod:`.concept_bank`)."""
        return self.encode_text(list(texts), show_progress=show_progress), {"embeddings": "encoded"}

    def bank_embedding_key(self, info: dict) -> str:
        """What identifies :meth:`encode_bank_texts`' output besides the texts and the model spec (part of the
        querybank statistics' cache key). Default: nothing more."""
        return "encode_text"

    def describe(self) -> dict:
        """JSON-able description (spec, dim, class) for fingerprints and ``xmr info``."""
        return {"spec": self.spec, "dim": self.dim, "class": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec!r}, dim={self.dim})"


def _to_numpy(x) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().to(torch.float32).cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def batched(items: Sequence, n: int) -> Iterable[Sequence]:
    for s in range(0, len(items), n):
        yield items[s : s + n]
