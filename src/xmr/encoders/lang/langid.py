"""Which language a query is in: ``py3langid`` (langid.py's maintained fork; a naive Bayes model over byte n-grams,
shipped inside the wheel, numpy only, nothing downloaded).

The rule (:func:`detect`), decided and documented in docs/multilingual.md:

1. ``lang`` given explicitly: used as is (it must be English or one of the acquired languages, else ConfigError
   listing them);
2. else the identifier ranks English and the acquired languages only; a non-English language is used when its
   probability among them is at least :data:`MIN_CONFIDENCE`. Short, ambiguous queries ("dog", "pes", "red car")
   stay on the English tower, whose vectors they then get exactly as before. A query the full identifier gives
   to a language that is not acquired (probability >= :data:`UNSUPPORTED_CONFIDENCE`, e.g. Spanish, which the
   restricted ranking would call French) stays on English too;
3. the full identifier's own top language (over its 97 languages) is recorded beside the decision, so a query in an
   unsupported language (``detected: "es"``) is reported as searched with the English tower, never silently.

A query mixing languages gets one language, the one the identifier scores highest over the whole text.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

from ...errors import ConfigError, MissingExtraError

#: probability (among English + the acquired languages) a non-English language needs to be used automatically
MIN_CONFIDENCE = 0.9
#: the full identifier's probability above which its top language, when not acquired, keeps a query on English
UNSUPPORTED_CONFIDENCE = 0.5

LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "cs": "Czech", "es": "Spanish", "it": "Italian",
                  "ja": "Japanese", "zh": "Chinese", "ru": "Russian", "pl": "Polish", "tr": "Turkish", "ko": "Korean"}


@dataclass(frozen=True)
class Detection:
    lang: str  # the tower used: "en" or an acquired language
    how: str  # "explicit" | "detected" | "default" (English: nothing else was confident enough)
    detected: str | None = None  # the full identifier's top language (None when lang was explicit)
    confidence: float | None = None  # probability of ``lang`` among English + acquired languages

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=8)
def _identifier(langs: tuple[str, ...] | None = None):
    """py3langid's identifier over all its languages (None) or restricted to ``langs``."""
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        raise MissingExtraError("automatic query-language detection needs py3langid: pip install py3langid "
                                "(or pass the language explicitly, --lang / lang=)") from None
    if langs is None:  # once per process; the restricted identifiers are views of this one
        return _load_full(LanguageIdentifier, MODEL_FILE)
    import copy

    ident = copy.copy(_identifier(None))
    ident.set_languages(langs)
    return ident


def _load_full(cls, model_file: str):
    """The full identifier, from an uncompressed copy of the wheel's model in ``$XMR_CACHE/langid``.

    py3langid ships its model LZMA-compressed; decompressing it costs ~0.7 s of CPU in every process, which a one-shot
    ``xmr search`` paid for each query. The first use writes the decoded arrays once (an ``.npz``, written atomically,
    named by the compressed file's size and mtime so a py3langid upgrade makes a new one); later processes load it
    without LZMA. The arrays are exactly py3langid's (same dtypes and conversions as its ``modelio.load_model``). A
    cache that cannot be written or read falls back to py3langid's own loader (same model, just slower)."""
    import os
    import zipfile
    from array import array
    from pathlib import Path

    import numpy as np
    import py3langid.langid as pl

    from ...paths import cache_dir

    src = Path(pl.MODEL_DIR) / model_file
    st = src.stat()
    dtypes = {2: np.uint16, 4: np.uint32, 8: np.uint64}
    cached = cache_dir("langid", f"model-{st.st_size}-{st.st_mtime_ns}.npz")
    if not cached.is_file():
        try:
            ptc, pc, classes, nextmove, row, output = pl._load_model_file(src)
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.savez(f, ptc=np.asarray(ptc), pc=np.asarray(pc), classes=np.array(classes),
                         nextmove=np.frombuffer(nextmove, dtype=dtypes[nextmove.itemsize]),
                         row=np.frombuffer(row, dtype=dtypes[row.itemsize]), out=np.asarray(output, dtype=np.int64))
            os.replace(tmp, cached)
        except OSError:
            return cls.from_model_file(model_file, norm_probs=True)
        return cls(np.asarray(ptc), np.asarray(pc), classes, nextmove, output, norm_probs=True, tk_row=row)
    try:
        with np.load(cached, allow_pickle=False) as d:
            nextmove, row = array(d["nextmove"].dtype.char), array(d["row"].dtype.char)
            nextmove.frombytes(d["nextmove"].tobytes())
            row.frombytes(d["row"].tobytes())
            return cls(d["ptc"], d["pc"], d["classes"].tolist(), nextmove, d["out"].tolist(), norm_probs=True,
                       tk_row=row)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # damaged cache: rebuilt by the next process
        cached.unlink(missing_ok=True)
        return cls.from_model_file(model_file, norm_probs=True)


def check_language(lang: str, supported: tuple[str, ...]) -> str:
    code = str(lang).strip().lower()
    if code not in supported:
        names = ", ".join(f"{c} ({LANGUAGE_NAMES.get(c, c)})" for c in supported)
        raise ConfigError(f"language {lang!r} is not supported by this model; supported: {names}. Train an acquirer "
                          f"with: xmr train-text --method mla --lang {code or 'L'} --data multi30k:DIR --out DIR")
    return code


def detect(text: str, supported: tuple[str, ...], lang: str | None = None) -> Detection:
    """The tower for one query; ``supported`` = ("en", acquired languages...). See the module doc."""
    if lang:
        return Detection(check_language(lang, supported), "explicit")
    if len(supported) == 1 or not text.strip():
        return Detection("en", "default")
    full, p_full = _identifier().classify(text)
    known = tuple(sorted(set(c for c in supported if c in _identifier().labels) | {"en"}))
    best, p = _identifier(known).classify(text)
    if best != "en" and p >= MIN_CONFIDENCE and (full in known or p_full < UNSUPPORTED_CONFIDENCE):
        return Detection(best, "detected", full, round(float(p), 4))
    p_en = dict(_identifier(known).rank(text))["en"]
    return Detection("en", "detected" if best == "en" else "default", full, round(float(p_en), 4))
