"""Where the details Ask&Confirm can propose come from: a vocabulary of short phrases (objects, attributes).

* ``concepts``: the 1000 ImageNet class names (what the default ``concept`` model's concept bank is made of);
* ``coco``: the 80 MS-COCO object categories (the paper's object vocabulary: it proposes detected COCO objects);
* a text file: one detail per line (blank lines and ``#`` comments ignored).

The default is ``concepts`` for ``concept`` models and ``coco`` for every other encoder.
"""
from __future__ import annotations

from pathlib import Path

from ...errors import ConfigError

COCO_CATEGORIES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

MAX_DETAILS = 20000
MAX_DETAIL_CHARS = 200


def default_vocabulary(model_spec: str) -> str:
    """``concepts`` for the concept models, ``coco`` otherwise."""
    return "concepts" if str(model_spec).partition(":")[0] == "concept" else "coco"


def load_vocabulary(source: str) -> tuple[str, ...]:
    """The details of ``source`` (``concepts``, ``coco`` or a text file), de-duplicated in order."""
    if source == "coco":
        items = list(COCO_CATEGORIES)
    elif source == "concepts":
        from ...encoders.concept import class_texts

        items = class_texts("names")
    else:
        p = Path(source)
        if not p.is_file():
            raise ConfigError(f"detail vocabulary {source!r}: not 'concepts', 'coco' or a readable text file "
                              f"(one detail per line)")
        try:
            text = p.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"detail vocabulary {source}: cannot be read as UTF-8 text ({e})") from None
        items = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    seen, out = set(), []
    for it in items:
        key = it.lower()
        if len(it) > MAX_DETAIL_CHARS:
            raise ConfigError(f"detail vocabulary {source}: a detail is longer than {MAX_DETAIL_CHARS} characters")
        if key not in seen:
            seen.add(key)
            out.append(it)
    if not out:
        raise ConfigError(f"detail vocabulary {source}: no details in it")
    if len(out) > MAX_DETAILS:
        raise ConfigError(f"detail vocabulary {source}: {len(out)} details, at most {MAX_DETAILS}")
    return tuple(out)


__all__ = ["COCO_CATEGORIES", "default_vocabulary", "load_vocabulary"]
