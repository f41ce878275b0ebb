"""Experts: what an indexed item carries besides its visual embedding (registry :data:`xmr.registries.EXPERTS`).

=========== ===================================================== ===========================================
name        reads                                                 rows
=========== ===================================================== ===========================================
ocr         scene text in images and sampled video frames          one per image / per frame (with its time)
            (RapidOCR, extra ``xmr[ocr]``)
sidecar     ``photo.txt`` / ``photo.json`` next to the file, EXIF, one per field (title, tags, exif:..., ...)
            XMP and IPTC inside images
subtitles   ``clip.srt`` / ``clip.vtt`` next to a video            one per cue (start, end)
=========== ===================================================== ===========================================

Flow: after ``media`` / ``encoders`` / ``video`` (experts read files and sample frames), before ``index`` (the
indexer runs them, :mod:`xmr.index.experts_pass`) and ``retrieval`` (the ``experts`` stage scores and fuses them).
"""
from __future__ import annotations

from ..registries import EXPERTS
from .base import Expert, ExpertText, create_expert, parse_experts

__all__ = ["EXPERTS", "Expert", "ExpertText", "create_expert", "parse_experts"]
