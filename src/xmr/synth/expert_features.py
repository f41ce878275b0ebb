"""A synthetic multi-expert world for expert fusion (``benchmarks/fusion.py``, tests): items whose visual vector and
expert rows each carry a different part of their content, and captions each answered by *one* source.

Each item has one latent content vector per source (visual, ``ocr``, ``sidecar``, ``subtitles``; Gaussian in
``dim`` dimensions around a per-source mean direction of weight ``style``, so a caption's wording hints at the
source that answers it). What an index would hold:

* visual vector: ``norm(c_visual + noise)`` (image tower: no text-side offset);
* ``ocr`` (present for ``p_ocr`` of the items): one row ``norm(c_ocr + gap * u + noise)``; of the items without
  it, ``p_junk`` get a junk row (incidental text: a random content vector);
* ``sidecar`` (``p_sidecar``): one row ``norm(c_sidecar + gap * u + noise)``;
* ``subtitles`` (``p_subtitles``): ``cues`` rows with start times 0, 5, 10, ... s, one of them (at a random
  position) carries ``c_subtitles``, the others random content;

``u`` is a direction shared by everything the text tower embeds (the captions too): the modality gap that makes
text-to-text cosines larger than text-to-image ones, so fixed sum / max rules over-trust text experts. A caption
picks one source the item has (uniformly) and is ``norm(c_source + gap * u + noise)``: it is answered by that
source only. Returned as numpy arrays plus per-item row lists in the shape :func:`xmr.experts.fusers.pack_items`
takes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXPERTS = ("ocr", "sidecar", "subtitles")


@dataclass(frozen=True)
class ExpertWorldConfig:
    items: int = 400  # number of items
    captions: int = 2  # captions per item
    dim: int = 32  # width of every vector
    noise: float = 0.6  # std of the per-vector Gaussian noise relative to the content's (unit-variance per dim)
    gap: float = 1.0  # weight of the shared text direction u
    p_ocr: float = 0.5
    p_junk: float = 0.3
    p_sidecar: float = 0.6
    p_subtitles: float = 0.5
    cues: int = 3
    style: float = 1.0  # weight of a per-source mean direction in its content: a caption about scene text "reads
    #                     like" one (as "a sign that says ..." does), so which source answers a caption can be
    #                     inferred from it; 0: not at all

@dataclass
class ExpertWorld:
    visual: np.ndarray  # (I, dim)
    rows: list[dict]  # per item {expert: [(vector, start or None), ...]}
    queries: np.ndarray  # (Q, dim)
    targets: np.ndarray  # (Q,) item index
    sources: np.ndarray  # (Q,) which source answers the query: 0 visual, 1 + index in EXPERTS
    experts: tuple[str, ...] = EXPERTS


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_expert_world(cfg: ExpertWorldConfig, seed: int) -> ExpertWorld:
    rng = np.random.default_rng(seed)
    d, n = cfg.dim, cfg.items
    u = _unit(rng.normal(size=d)) * np.sqrt(d)  # same scale as a content vector

    def noisy(c, text: bool):
        return _unit(c + (cfg.gap * u if text else 0) + cfg.noise * rng.normal(size=c.shape))

    styles = rng.normal(size=(1 + len(EXPERTS), d))
    content = rng.normal(size=(n, 1 + len(EXPERTS), d)) + cfg.style * styles[None]
    visual = noisy(content[:, 0], False)
    rows, queries, targets, sources = [], [], [], []
    for i in range(n):
        r: dict = {}
        real = [0]  # the sources that carry this item's content (a junk OCR row does not)
        if rng.random() < cfg.p_ocr:
            r["ocr"] = [(noisy(content[i, 1], True), None)]
            real.append(1)
        elif rng.random() < cfg.p_junk:
            r["ocr"] = [(noisy(rng.normal(size=d), True), None)]
        if rng.random() < cfg.p_sidecar:
            r["sidecar"] = [(noisy(content[i, 2], True), None)]
            real.append(2)
        if rng.random() < cfg.p_subtitles:
            hit = int(rng.integers(cfg.cues))
            r["subtitles"] = [(noisy(content[i, 3] if k == hit else rng.normal(size=d), True), 5.0 * k)
                              for k in range(cfg.cues)]
            real.append(3)
        rows.append(r)
        for _ in range(cfg.captions):
            s = int(rng.choice(real))
            queries.append(noisy(content[i, s], True))
            targets.append(i)
            sources.append(s)
    return ExpertWorld(visual, rows, np.stack(queries), np.asarray(targets), np.asarray(sources))


__all__ = ["EXPERTS", "ExpertWorld", "ExpertWorldConfig", "make_expert_world"]
