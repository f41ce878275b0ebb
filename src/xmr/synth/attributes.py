"""A feature-level synthetic world where caption ambiguity is known exactly.

Each item has one value in each of several attribute groups (think colour, shape, size, position). Its image
feature is the sum of one random vector per attribute value (image-side vectors) plus noise. A caption mentions a
random non-empty subset of the groups; its text feature is the sum of the *text-side* vectors of the mentioned
values plus noise. A caption that leaves out ``u`` groups fits every item that agrees on the mentioned ones, so
``u`` (``ambiguity``) measures how many images it plausibly describes - what PCME's uncertainty is meant to capture
(and what PMRP's class-label plausibility counts).

Labels are the multi-hot (group, value) indicators, so label-based metrics (PMRP, mAP@K) apply directly.
Deterministic for a seed; numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class AttributeWorld:
    image_features: np.ndarray  # (N, F) float32
    text_features: np.ndarray  # (T, F) float32
    text_to_item: np.ndarray  # (T,) int64
    ambiguity: np.ndarray  # (T,) int: attribute groups the caption leaves out
    mentions: np.ndarray  # (T, G) bool: which groups each caption mentions
    labels: np.ndarray  # (N, C) bool multi-hot over every (group, value)
    values: np.ndarray  # (N, G) int: the value of each group
    text_vectors: np.ndarray | None = None  # (C, F): the text-side vector of every (group, value) (a "detail")
    image_vectors: np.ndarray | None = None  # (C, F): the image-side vector of every (group, value)


def attribute_world(num_items: int, *, groups: tuple[int, ...] = (6, 5, 4, 3), captions_per_item: int = 3,
                    dim: int = 32, noise: float = 0.3, seed: int = 0) -> AttributeWorld:
    """Sample a world (see the module docstring). ``groups``: number of values per attribute group."""
    if num_items < 1 or captions_per_item < 1 or dim < 1 or not groups or min(groups) < 1:
        raise ConfigError("attribute_world needs num_items, captions_per_item, dim >= 1 and groups of size >= 1")
    if noise < 0:
        raise ConfigError("noise must be >= 0")
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(groups)[:-1]])
    n_classes = int(sum(groups))
    img_vec = rng.normal(size=(n_classes, dim)) / np.sqrt(dim)
    txt_vec = rng.normal(size=(n_classes, dim)) / np.sqrt(dim)
    values = np.stack([rng.integers(0, g, size=num_items) for g in groups], axis=1)
    cls = values + offsets  # (N, G) class index of each group's value
    labels = np.zeros((num_items, n_classes), dtype=bool)
    np.put_along_axis(labels, cls, True, axis=1)
    image = img_vec[cls].sum(1) + noise * rng.normal(size=(num_items, dim)) / np.sqrt(dim)
    t2i = np.repeat(np.arange(num_items), captions_per_item)
    mention = rng.random((t2i.size, len(groups))) < 0.5
    empty = ~mention.any(1)
    mention[empty, rng.integers(0, len(groups), size=int(empty.sum()))] = True
    text = (txt_vec[cls[t2i]] * mention[..., None]).sum(1) + noise * rng.normal(size=(t2i.size, dim)) / np.sqrt(dim)
    return AttributeWorld(
        image_features=image.astype(np.float32), text_features=text.astype(np.float32), text_to_item=t2i,
        ambiguity=(len(groups) - mention.sum(1)).astype(np.int64), mentions=mention, labels=labels, values=values,
        text_vectors=txt_vec.astype(np.float32), image_vectors=img_vec.astype(np.float32),
    )


def caption_fit(world: AttributeWorld, texts: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(len(texts), len(items)) semantic relevance: the share of a caption's mentioned attributes an item has
    (1 for its own item and for every item the caption describes equally well)."""
    cap_vals = world.values[world.text_to_item[texts]]  # (T, G)
    agree = cap_vals[:, None, :] == world.values[items][None, :, :]  # (T, I, G)
    m = world.mentions[texts][:, None, :]
    return (agree & m).sum(-1) / m.sum(-1)
