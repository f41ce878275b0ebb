"""Scene text: RapidOCR (PP-OCRv4 detection + recognition on ONNX Runtime, models shipped in the
``rapidocr-onnxruntime`` wheel, extra ``xmr[ocr]``) on images and on frames sampled from videos.

One row per image (its recognised lines joined in reading order, each kept when its confidence is at least
``min_confidence``) and one row per sampled video frame with its time (start = end = the frame's time; a hit on
it is a moment). The rows are embedded with the index model's text tower and aggregated with the visual embedding
at search time (ViSTA-style, see :mod:`xmr.retrieval.stages.experts`); their text also serves exact phrase search
(``xmr search --phrase``).

Bad input: an image over ``max_pixels`` (OCR's own limit, below the indexer's) or one that cannot be decoded
raises :class:`~xmr.errors.ExpertSkip` (the item keeps its visual embedding).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .._deps import require
from ..errors import ExpertSkip, MediaError
from ..registries import EXPERTS
from .base import Expert, ExpertText, clean_text

_ENGINE = None
_LOCK = threading.Lock()


def _engine():
    """One RapidOCR engine per process (loading its three ONNX models takes ~0.5 s)."""
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            mod = require("rapidocr_onnxruntime", "ocr", "rapidocr-onnxruntime (the ocr expert; it ships its models)")
            import logging

            _ENGINE = mod.RapidOCR()
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
        return _ENGINE


def recognise(rgb: np.ndarray, min_confidence: float = 0.5) -> list[tuple[str, float, tuple[float, float]]]:
    """(text, confidence, (top y, left x)) of each line RapidOCR finds in an (H, W, 3) uint8 RGB array, in reading
    order (top to bottom, then left to right), lines below ``min_confidence`` dropped."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])  # RapidOCR takes OpenCV's BGR order
    result, _ = _engine()(bgr)
    out = []
    for box, text, conf in result or []:
        conf = float(conf)
        text = clean_text(text, 500)
        if text and conf >= min_confidence:
            ys = [p[1] for p in box]
            xs = [p[0] for p in box]
            out.append((text, conf, (float(min(ys)), float(min(xs)))))
    out.sort(key=lambda t: (round(t[2][0] / 8), t[2][1]))  # rows of ~8 px, then left to right
    return out


@EXPERTS.register("ocr", help="scene text read by RapidOCR (xmr[ocr]) from images and sampled video frames")
class OcrExpert(Expert):
    name = "ocr"
    version = "1"

    @dataclass
    class Config:
        min_confidence: float = 0.5  # recognised lines below this are dropped
        max_pixels: int = 40_000_000  # larger images are skipped for OCR (their visual embedding is kept)
        max_side: int = 2048  # images are downscaled to this longest side before detection
        video_fps: float = 0.5  # video frames read per second ...
        video_max_frames: int = 16  # ... at most this many per video

    def extract(self, path: str, media_type: str) -> list[ExpertText]:
        if media_type == "video":
            return self._video(path)
        from ..media.image import load_image

        cfg = self.config
        try:
            im = load_image(path, max_pixels=cfg.max_pixels)
        except MediaError as e:
            raise ExpertSkip(path, f"ocr: {e.reason}") from None
        if max(im.size) > cfg.max_side:
            im = im.copy()
            im.thumbnail((cfg.max_side, cfg.max_side))
        lines = recognise(np.asarray(im.convert("RGB")), cfg.min_confidence)
        return _row(lines, None)

    def _video(self, path: str) -> list[ExpertText]:
        from ..media.video import VideoReader, sample_timestamps

        cfg = self.config
        rows: list[ExpertText] = []
        try:
            with VideoReader(path) as clip:
                ts = sample_timestamps(clip.info.duration, cfg.video_max_frames, fps=cfg.video_fps)
                for t, arr in clip.frames_at(ts, size=1024, tolerance=0.5):
                    rows += _row(recognise(arr, cfg.min_confidence), float(t))
        except MediaError as e:
            raise ExpertSkip(path, f"ocr: {e.reason}") from None
        return rows


def _row(lines, t: float | None) -> list[ExpertText]:
    if not lines:
        return []
    text = clean_text(" ".join(x[0] for x in lines))
    conf = float(np.mean([x[1] for x in lines]))
    return [ExpertText(text, "ocr", t, t, conf)]
