"""Moment training data for ``xmr train-moments`` (:func:`xmr.train.moments.train_squidnet`): the
:class:`~xmr.train.moments.MomentData` of a dataset spec.

* ``moments:DIR`` — ``DIR/train.npz`` and ``DIR/test.npz`` (``xmr synth moments``, or :func:`save_moment_data`
  with your own arrays): the arrays of :class:`MomentData` (``frames``, ``queries``, ``object_queries``, ``video``,
  ``start``, ``end``, ``objects``, ``predicates``, ``clip_seconds``);
* ``tvr:DIR`` — TVR's release jsonl (:mod:`xmr.data.tvr`) with one ``DIR/features/<vid_name>.npy`` (clips, D) per
  video; the descriptions are encoded with the text tower of ``--model`` (whose width must be the features' D:
  export the clip features with the same model). Videos of different lengths are padded with zero features to
  the longest (a simplification: SQuiDNet's training here has no clip mask, so padding clips are candidates that
  the model learns to avoid, never ground truth). A moment ``ts = [st, ed]`` seconds covers clips
  ``floor(st / clip_seconds)`` .. ``ceil(ed / clip_seconds) - 1`` (clamped to the video).

Object / predicate words. SQuiDNet's co-occurrence table needs each query's object word and predicate; TVR rows
carry none, so unless a row has ``"object"`` and ``"predicate"`` fields they are derived from the text by
:func:`parse_query_words`, a simple rule (documented simplification, no parser): the description's lower-case
alphabetic words minus a list of stop words are its content words; the **predicate** is the first content word
after the first one (the subject: "Ross", a name ending in -s) that ends in ``-s``, ``-ed`` or ``-ing`` (TVR
descriptions are present-tense: "Phoebe *puts* ..."; the first word itself when no later one does), the **object** the
first other content word after it (else before it); a query without such words gets ``<none>``. Plural nouns that
look like verbs are mis-read; the vocabulary is the training queries' words (ids in order of first appearance).
The biased branch reads the object word's text vector (``object_queries``).
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .moments import MomentData

FIELDS = ("frames", "queries", "object_queries", "video", "start", "end", "objects", "predicates")
NONE_WORD = "<none>"
_STOP = frozenset("""a an the and or but of to in on at by for with from into onto off up down out over under about
as is are was were be been being it its he she they them his her their him this that these those there here then
than so not no yes one two some while when where who whom which what as after before again just also very too
back s""".split())
_VERB = re.compile(r"[a-z]{3,}(s|ed|ing)$")


def parse_query_words(text: str) -> tuple[str, str]:
    """``(object, predicate)`` of a description by the rule in the module docstring."""
    words = [w for w in re.findall(r"[a-z]+", str(text).lower()) if w not in _STOP]
    found = [i for i, w in enumerate(words) if _VERB.fullmatch(w)]
    pi = next((i for i in found if i > 0), found[0] if found else None)  # the subject comes first
    pred = words[pi] if pi is not None else NONE_WORD
    rest = words[pi + 1:] + words[:pi] if pi is not None else words
    obj = rest[0] if rest else NONE_WORD
    return obj, pred


def _ids(words: list[str], vocab: dict[str, int]) -> np.ndarray:
    for w in words:
        vocab.setdefault(w, len(vocab))
    return np.array([vocab[w] for w in words], dtype=np.int64)


def save_moment_data(data: MomentData, path: str | Path) -> Path:
    """``data``'s arrays as one ``.npz`` (what ``moments:DIR`` reads as ``DIR/<split>.npz``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{f: getattr(data, f) for f in FIELDS}, clip_seconds=np.float64(data.clip_seconds))
    return path


def load_moment_npz(path: str | Path) -> MomentData:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: write one with `xmr synth moments --out {path.parent}` or "
                          "xmr.train.moment_data.save_moment_data")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [f for f in FIELDS if f not in z]
            if missing:
                raise ConfigError(f"{path} lacks {', '.join(missing)} (see docs/moments.md)")
            arrs = {f: z[f] for f in FIELDS}
            clip = float(z["clip_seconds"]) if "clip_seconds" in z else 1.5
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is not a numpy .npz file ({e})") from None
    if arrs["frames"].ndim != 3 or arrs["frames"].shape[0] == 0 or arrs["queries"].shape[0] == 0:
        raise ConfigError(f"{path}: no videos or no queries (frames {arrs['frames'].shape}, queries "
                          f"{arrs['queries'].shape})")
    for f in ("frames", "queries", "object_queries"):
        if not np.isfinite(arrs[f]).all():
            raise ConfigError(f"{path}: {f} holds NaN or infinite values")
    arrs = {f: a.astype(np.float32) if f in FIELDS[:3] else a.astype(np.int64) for f, a in arrs.items()}
    return MomentData(**arrs, clip_seconds=clip)


def tvr_moment_data(folder: str, split: str, encoder, *, clip_seconds: float = 1.5, features: str | None = None,
                    vocab: tuple[dict, dict] | None = None) -> tuple[MomentData, list[str]]:
    """(MomentData, video names) of TVR ``split`` (module docstring). ``vocab``: the (object, predicate) word ids
    to extend (pass the same pair for train and eval)."""
    from ..data.tvr import SPLIT_FILES, load_tvr_features, read_tvr_rows

    if split not in SPLIT_FILES:
        raise ConfigError(f"tvr: split {split!r} is not one of {', '.join(SPLIT_FILES)}")
    if not clip_seconds > 0:
        raise ConfigError(f"clip seconds must be > 0, got {clip_seconds}")
    rows = read_tvr_rows(os.path.join(folder, SPLIT_FILES[split]))
    names = list(dict.fromkeys(str(r.get("vid_name")) for r in rows))
    feats = load_tvr_features(features or os.path.join(folder, "features"), names)
    t = max(len(f) for f in feats.values())
    d = next(iter(feats.values())).shape[1]
    if encoder.dim != d:
        raise ConfigError(f"TVR features are {d} wide but {encoder.spec} encodes {encoder.dim}-wide text: export the "
                          f"clip features with the model you pass as --model")
    frames = np.zeros((len(names), t, d), np.float32)
    for i, n in enumerate(names):
        frames[i, :len(feats[n])] = feats[n]
    vid_of = {n: i for i, n in enumerate(names)}
    video, start, end, objs, preds, texts = [], [], [], [], [], []
    for n, r in enumerate(rows, 1):
        ts, desc = r.get("ts"), r.get("desc")
        if not isinstance(ts, list) or len(ts) != 2 or not isinstance(desc, str) or not desc.strip():
            raise ConfigError(f"tvr {split}: line {n} needs 'ts' [start, end] and a 'desc'")
        v = vid_of[str(r["vid_name"])]
        last = len(feats[str(r["vid_name"])]) - 1
        s = min(max(int(math.floor(float(ts[0]) / clip_seconds)), 0), last)
        e = min(max(int(math.ceil(float(ts[1]) / clip_seconds)) - 1, s), last)
        o, p = (str(r["object"]), str(r["predicate"])) if "object" in r and "predicate" in r \
            else parse_query_words(desc)
        video.append(v), start.append(s), end.append(e), objs.append(o), preds.append(p), texts.append(desc)
    ov, pv = vocab if vocab is not None else ({}, {})
    q = encoder.encode_text(texts, show_progress=False)
    oq = encoder.encode_text(objs, show_progress=False)
    data = MomentData(frames, q, oq, np.array(video), np.array(start), np.array(end), _ids(objs, ov),
                      _ids(preds, pv), clip_seconds)
    return data, names


def load_moment_data(spec: str, split: str, *, encoder=None, clip_seconds: float = 1.5,
                     vocab: tuple[dict, dict] | None = None) -> MomentData:
    """``moments:DIR`` or ``tvr:DIR`` (module docstring) split ``split``; ``encoder`` is needed for TVR."""
    kind, _, arg = spec.partition(":")
    if kind == "moments" and arg:
        return load_moment_npz(Path(arg).expanduser() / f"{split}.npz")
    if kind == "tvr" and arg:
        if encoder is None:
            raise ConfigError("tvr: the descriptions are encoded with --model; give one")
        return tvr_moment_data(str(Path(arg).expanduser()), split, encoder, clip_seconds=clip_seconds,
                               vocab=vocab)[0]
    raise ConfigError(f"moment dataset {spec!r}: give moments:DIR (xmr synth moments) or tvr:DIR (release jsonl + "
                      "features/<vid_name>.npy)")


__all__ = ["load_moment_data", "load_moment_npz", "parse_query_words", "save_moment_data", "tvr_moment_data"]
