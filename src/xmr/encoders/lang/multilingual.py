"""Queries in several languages onto one frozen English sentence tower: English text goes to the tower itself (the
caller's own path, ONNX Runtime for ``concept``), text in an acquired language to that language's MLA acquirer on the
torch tower (:mod:`.acquirer`). Which language: :func:`.langid.detect`.

Acquirer folders: the bundled ones in ``xmr/assets/lang/<lang>/`` (de, fr, cs, trained on Multi30K's training text;
``provenance.json`` beside each), or a user's (``xmr train-text --method mla --lang L --out DIR``).
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from .langid import LANGUAGE_NAMES, Detection, detect

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "assets" / "lang"


def bundled_languages() -> tuple[str, ...]:
    """Languages with an acquirer shipped in the package."""
    if not BUNDLED_DIR.is_dir():
        return ()
    return tuple(sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "config.json").is_file()))


def resolve_acquirers(arg: str | None) -> dict[str, Path]:
    """``None`` -> every bundled acquirer; ``"none"`` / ``"en"`` -> none; ``"de,fr[@DIR]"`` -> those languages, each
    from ``DIR/<lang>/`` or ``DIR`` itself (a folder holding one acquirer of that language), else bundled. ConfigError
    naming what exists when a language has no acquirer."""
    if arg is None:
        return {lang: BUNDLED_DIR / lang for lang in bundled_languages()}
    langs_part, _, folder = arg.partition("@")
    langs = [s.strip().lower() for s in langs_part.split(",") if s.strip()]
    if not langs:
        raise ConfigError("concept+lang: give languages, e.g. concept+lang:de,fr,cs (or concept+lang:none)")
    if langs in (["none"], ["en"]):
        return {}
    out: dict[str, Path] = {}
    base = Path(folder).expanduser() if folder else None
    if base is not None and not base.is_dir():
        raise ConfigError(f"concept+lang: acquirer folder {folder} not found; train one with: xmr train-text "
                          f"--method mla --lang {langs[0]} --data multi30k:DIR --out {folder}")
    for lang in langs:
        if lang == "en":
            continue
        cands = []
        if base is not None:
            cands += [base / lang, base]
        cands.append(BUNDLED_DIR / lang)
        found = next((c for c in cands if _acquirer_lang(c) == lang), None)
        if found is None:
            have = ", ".join(bundled_languages()) or "none"
            where = f" in {folder} (as {folder}/{lang}/ or {folder} itself)" if folder else ""
            raise ConfigError(f"concept+lang: no acquirer for {lang!r} ({LANGUAGE_NAMES.get(lang, lang)}){where}; "
                              f"bundled: {have}. Train one with: xmr train-text --method mla --lang {lang} "
                              "--data multi30k:DIR --out DIR")
        out[lang] = found.resolve()
    return out


def _acquirer_lang(folder: Path) -> str | None:
    import json

    cfg = folder / "config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text("utf-8")).get("lang")
    except (OSError, ValueError, AttributeError):
        return None


class MultilingualText:
    """``encode(texts, langs)``: (N, width) unit vectors of non-English texts through their acquirers (torch, loaded
    on first use, thread-safe). English texts are not handled here: the caller keeps its own English path."""

    def __init__(self, acquirers: dict[str, Path], model_dir: Path):
        self.paths = dict(acquirers)
        self.model_dir = Path(model_dir)
        self.languages = ("en", *sorted(self.paths))
        self._tower = None
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()

    def detect(self, texts: list[str], lang: str | None = None) -> list[Detection]:
        return [detect(t, self.languages, lang) for t in texts]

    def _acquirer(self, lang: str):
        with self._lock:
            if self._tower is None:
                from .acquirer import FrozenTower

                self._tower = FrozenTower(self.model_dir)
            if lang not in self._loaded:
                from .acquirer import load_acquirer

                self._loaded[lang] = load_acquirer(self.paths[lang], f"acquirer {lang} ({self.paths[lang]})")
            return self._tower, self._loaded[lang]

    def encode(self, texts: list[str], lang: str) -> np.ndarray:
        import torch

        from .acquirer import encode_ids

        tower, acq = self._acquirer(lang)
        out = np.zeros((len(texts), tower.width), np.float32)
        with torch.no_grad():
            for s in range(0, len(texts), 64):
                ids, mask = encode_ids(acq.tokenizer, texts[s: s + 64])
                out[s: s + 64] = tower.sentence(acq.module, ids, mask).float().numpy()
        return out

    def describe(self) -> dict:
        from .acquirer import read_provenance

        return {lang: {"path": str(p), "sha256": _sha(p / "model.safetensors"),
                       "provenance": read_provenance(p).get("data", "")} for lang, p in sorted(self.paths.items())}


def _sha(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
