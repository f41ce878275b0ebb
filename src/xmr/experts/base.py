"""The expert interface: what an item carries besides its visual embedding.

An expert turns a media file (or data next to it) into :class:`ExpertText` rows: a text, the field it came from,
an optional time span (a subtitle cue, an OCR'd video frame) and a confidence. The indexer
(:mod:`xmr.index.experts_pass`) embeds each row's text with the index model's text tower and stores it
(``expert_text`` table); search scores a query against every expert and fuses the scores with the visual one
(:mod:`xmr.retrieval.stages.experts`).

An expert must be cheap to ask whether its inputs changed: :meth:`Expert.signature` is computed on every
``xmr index`` run for every item (it may ``stat`` sidecar files, never decode), and the expert re-runs for an item
only when it differs from the stored one. A file the expert cannot use raises :class:`~xmr.errors.ExpertSkip`
with a reason: that expert is skipped for that file (recorded), the item and the other experts are kept.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from ..errors import ConfigError


@dataclass(frozen=True)
class ExpertText:
    """One row an expert produced for an item."""

    text: str
    field: str = ""  # where it came from: "ocr", "title", "tags", "exif:ImageDescription", "cue", ...
    start: float | None = None  # seconds (video frames, subtitle cues); None for a whole image / file
    end: float | None = None
    confidence: float | None = None  # the recogniser's confidence (OCR), None when not applicable
    vector: object = None  # an expert that embeds itself (audio): its unit vector in the index model's text space;
    # None: the indexer embeds ``text`` with the index model's text tower


class Expert(ABC):
    """Subclasses set ``name``, ``media_types``, a ``Config`` dataclass and ``version`` (bump it when the output
    for the same input changes: stored rows are then recomputed)."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    media_types: ClassVar[tuple[str, ...]] = ("image", "video")

    @dataclass
    class Config:
        pass

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    def applies(self, media_type: str) -> bool:
        return media_type in self.media_types

    def inputs(self, path: str) -> list[str]:
        """Files besides ``path`` this expert reads for it (sidecars); their size and mtime enter the signature."""
        return []

    def signature(self, path: str, sha256: str) -> str:
        """A string that changes when this expert's output for ``path`` can change: the media file's hash, the
        expert's version and config, and the size / mtime of the extra files it reads. Cheap (stat only)."""
        parts = [self.name, self.version, repr(self.config), sha256]
        for f in self.inputs(path):
            try:
                st = os.stat(f)
            except OSError:
                continue
            parts.append(f"{os.path.basename(f)}:{st.st_size}:{st.st_mtime_ns}")
        return "|".join(parts)

    @abstractmethod
    def extract(self, path: str, media_type: str) -> list[ExpertText]:
        """The rows for one file (possibly none). Raises ExpertSkip when the file cannot be used by this expert."""

    def describe(self) -> dict:
        from dataclasses import asdict

        return {"name": self.name, "version": self.version, "config": asdict(self.config)}


def parse_experts(text: str | None) -> list[str]:
    """``"ocr,sidecar"`` -> ``["ocr", "sidecar"]``, each name checked against :data:`xmr.registries.EXPERTS`.
    ``name:ARG`` passes ``ARG`` to the expert (``audio:DIR``: its tower); the name keeps it (a path made absolute),
    and a later ``name:OTHER`` replaces an earlier ``name``."""
    from ..registries import EXPERTS, load_all

    if text is None:
        return []
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise ConfigError("--experts needs at least one name, e.g. --experts ocr,sidecar")
    load_all("expert")
    out: dict[str, str] = {}
    for n in names:
        base, _, arg = n.partition(":")
        cls = EXPERTS.get(base)  # ConfigError naming the available experts
        if arg:
            if not hasattr(cls, "from_arg"):
                raise ConfigError(f"expert {base} takes no argument (got {n!r}); write --experts {base}")
            n = f"{base}:{os.path.abspath(os.path.expanduser(arg))}"
        out[base] = n
    return list(out.values())


def expert_base(name: str) -> str:
    """``"audio:/x/tower"`` -> ``"audio"`` (the name the expert's rows are stored under)."""
    return str(name).partition(":")[0]


def create_expert(name: str, settings: dict | None = None) -> Expert:
    """Expert ``name``; ``settings`` (a dict of its Config's fields, e.g. the sidecar's ``manifests``) is checked
    with :func:`xmr.config.config_from_dict`."""
    from ..config import config_from_dict
    from ..registries import load_for

    base, _, arg = name.partition(":")
    cls = load_for("expert", base).get(base)
    if settings:  # recorded settings (xmr index --manifest) and a NAME:ARG spec are two ways to configure it
        if arg:
            raise ConfigError(f"expert {name!r}: give its settings either as NAME:ARG or recorded ones, not both")
        return cls(config_from_dict(cls.Config, settings))
    return cls.from_arg(arg) if arg else cls()


def clean_text(text: str, limit: int = 2000) -> str:
    """Whitespace collapsed, control characters dropped, cut to ``limit`` characters."""
    text = "".join(ch if ch.isprintable() or ch in "\n\t " else " " for ch in str(text))
    return " ".join(text.split())[:limit]
