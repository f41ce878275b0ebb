"""Training pairs in memory: a :class:`PairData` holds the model inputs of every image and caption of one split,
the caption -> image map, and what some losses need (class labels, frozen caption features), plus what synthetic data
records about corruption (for logs and claims, never for training).

Pair ids are caption indices: pair ``p`` is caption ``p`` with image ``text_to_item[p]``."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError


@dataclass
class PairData:
    name: str  # the dataset's name (with split)
    img_in: torch.Tensor  # (N, ...) image inputs: frozen features (adapter) or pixels (tiny)
    txt_in: torch.Tensor  # (T, ...) caption inputs: frozen features or token ids
    text_to_item: torch.Tensor  # (T,) int64
    text_offsets: np.ndarray  # (N + 1,) captions of image i are text_offsets[i]:text_offsets[i + 1]
    labels: torch.Tensor | None = None  # (N,) int64 class ids (manifest "label"), None without labels
    classes: tuple[str, ...] = ()  # class id -> name
    txt_ref: torch.Tensor | None = None  # (T, D) frozen caption features (adapter mode)
    noisy: torch.Tensor | None = None  # (T,) bool: pair known to be corrupted (manifest "corrupted")
    teacher_specs: tuple[str, ...] = ()  # frozen teachers (xmr train --teachers), in order
    teacher_txt: tuple[torch.Tensor, ...] = ()  # per teacher: (T, D_k) caption embeddings
    teacher_img: tuple[torch.Tensor | None, ...] = ()  # per teacher: (N, D_k) image embeddings, None if text-only
    texts: tuple[str, ...] = ()  # the captions, pair-id order (losses that read words, e.g. CODER's concepts)

    @property
    def num_items(self) -> int:
        return int(self.img_in.shape[0])

    @property
    def num_pairs(self) -> int:
        return int(self.txt_in.shape[0])

    def to(self, device) -> "PairData":
        def move(v):
            if isinstance(v, tuple):
                return tuple(move(x) for x in v)
            return v.to(device) if isinstance(v, torch.Tensor) else v

        return PairData(**{k: move(v) for k, v in self.__dict__.items()})

    def with_teachers(self, feats) -> "PairData":
        """A copy carrying the teachers' embeddings (:class:`xmr.train.teachers.TeacherFeatures`, in order)."""
        from dataclasses import replace

        for f in feats:
            if f.txt.shape[0] != self.num_pairs or (f.img is not None and f.img.shape[0] != self.num_items):
                raise ConfigError(f"teacher {f.spec!r}: {f.txt.shape[0]} captions / "
                                  f"{None if f.img is None else f.img.shape[0]} images, the data has "
                                  f"{self.num_pairs} / {self.num_items}")
        return replace(self, teacher_specs=tuple(f.spec for f in feats), teacher_txt=tuple(f.txt for f in feats),
                       teacher_img=tuple(f.img for f in feats))

    def teacher_batch(self, items: torch.Tensor, pairs: torch.Tensor) -> tuple:
        """The teachers' embeddings of one batch (pairs ``pairs`` with images ``items``), as loss inputs."""
        from .losses.base import TeacherBatch

        return tuple(TeacherBatch(s, t[pairs], None if i is None else i[items])
                     for s, t, i in zip(self.teacher_specs, self.teacher_txt, self.teacher_img))


def manifest_extras(dataset) -> dict[str, dict]:
    """absolute media path -> the manifest line's extra keys (``label``, ``corrupted``, ...) for ``manifest:``
    datasets; ``{}`` for other schemes."""
    if not dataset.spec.startswith("manifest:") or not dataset.source_files:
        return {}
    path = dataset.source_files[0]
    base = os.path.dirname(path)
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            obj = json.loads(line)
            media = next((obj[k] for k in ("media", "image", "video", "path") if k in obj), None)
            if isinstance(media, str):
                out[os.path.abspath(os.path.join(base, os.path.expanduser(media)))] = obj
    return out


def labels_of(dataset, classes: tuple[str, ...] | None = None) -> tuple[np.ndarray | None, tuple[str, ...], np.ndarray | None]:
    """(class id per item or None, class names, corrupted flag per item or None). ``classes`` fixes the id order
    (the training split's, for an evaluation split)."""
    extras = manifest_extras(dataset)
    rows = [extras.get(m, {}) for m in dataset.media]
    noisy = np.asarray([bool(r.get("corrupted", False)) for r in rows]) if any("corrupted" in r for r in rows) else None
    if not rows or not all("label" in r for r in rows):
        return None, (), noisy
    names = [str(r["label"]) for r in rows]
    classes = tuple(classes) if classes else tuple(sorted(set(names)))
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise ConfigError(f"{dataset.name}: labels {unknown[:5]} do not occur in the training split")
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index[n] for n in names], np.int64), classes, noisy


def build_pairs(dataset, img_in, txt_in, *, txt_ref=None, with_labels: bool = True) -> PairData:
    """Pairs of ``dataset`` (labels and corruption flags read from a manifest when ``with_labels``; an evaluation
    split needs neither)."""
    labels, classes, noisy = labels_of(dataset) if with_labels else (None, (), None)
    t2i = np.asarray(dataset.text_to_item, np.int64)
    return PairData(
        name=dataset.name, img_in=torch.as_tensor(img_in), txt_in=torch.as_tensor(txt_in),
        text_to_item=torch.from_numpy(t2i.copy()), text_offsets=np.asarray(dataset.text_offsets, np.int64),
        labels=None if labels is None else torch.from_numpy(labels), classes=classes,
        txt_ref=None if txt_ref is None else torch.as_tensor(txt_ref),
        noisy=None if noisy is None else torch.from_numpy(noisy[t2i]), texts=tuple(dataset.texts))


def tiny_inputs(config, dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, S, S) pixels and (T, L) token ids for a ``tiny`` model (images decoded once, kept in memory)."""
    from ..encoders.tiny import tokenize
    from ..media.image import ImagePreprocess, load_image

    pre = ImagePreprocess(size=config.image_size, crop=config.image_size, mean=config.mean, std=config.std)
    pixels = torch.from_numpy(np.stack([pre(load_image(p)) for p in dataset.media]).astype(np.float32))
    return pixels, tokenize(dataset.texts, config.context_length)


__all__ = ["PairData", "build_pairs", "labels_of", "manifest_extras", "tiny_inputs"]
