"""Incremental folder indexing: walk, diff against the index, encode what is new or changed, drop what is gone.

Only files whose (size, mtime) changed are re-hashed; only files whose content hash changed are re-encoded. Each
batch of images is committed on its own, and each video (its item row and all its segment rows) in its own
transaction, so an interrupted run resumes where it stopped with no duplicates and no half-indexed video.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

from .._progress import progress
from ..errors import ConfigError, MediaError, MissingExtraError, XmrIndexError
from ..video import VideoIndexConfig, embed_video
from .prefetch import Prefetcher, Prepared, file_sha256  # noqa: F401 - file_sha256 re-exported (was defined here)
from .store import IndexStore, NewItem
from .walker import Found, Skip, walk_media

if TYPE_CHECKING:  # torch loads with the model, not with the index
    from ..encoders.base import Encoder

log = logging.getLogger(__name__)

#: index meta key holding the video settings (``VideoIndexConfig.to_dict()``) of the last run that indexed videos
VIDEO_SETTINGS_KEY = "video_settings"


@dataclass
class IndexReport:
    """What one ``xmr index`` run did."""

    root: str
    seen: int = 0  # media files found under root
    added: int = 0  # newly encoded
    updated: int = 0  # re-encoded because content changed
    unchanged: int = 0
    removed: int = 0  # rows dropped because the file is gone
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    total: int = 0  # items in the index after the run

    def to_dict(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "skipped"},
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


@contextlib.contextmanager
def index_lock(path: Path):
    """Exclusive writer lock on the index folder (a second `xmr index` on the same index fails fast)."""
    import fcntl

    path.mkdir(parents=True, exist_ok=True)
    fh = open(path / ".lock", "w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise XmrIndexError(f"another process is writing index {path}; wait for it to finish") from None
        yield
    finally:
        fh.close()


class _LazyEncoder:
    """The encoder, created on first use (a no-op re-index never loads the model)."""

    def __init__(self, encoder: Encoder | Callable[[], Encoder], store: IndexStore):
        self._enc = None if _is_factory(encoder) else encoder
        self._factory = None if self._enc is not None else encoder
        self._store = store

    @property
    def loaded(self) -> bool:
        return self._enc is not None

    def get(self) -> Encoder:
        if self._enc is None:
            enc = self._factory()
            self._store.bind_model(enc.spec, enc.dim, enc.describe())  # checks the dim against the index
            self._enc = enc
        return self._enc


def _is_factory(encoder) -> bool:
    return callable(encoder) and not hasattr(encoder, "encode_images")


EncoderOrFactory = Union["Encoder", Callable[[], "Encoder"]]


def index_folder(
    root: str | os.PathLike,
    index_path: str | os.PathLike,
    encoder: EncoderOrFactory,
    *,
    batch_size: int = 8,  # peak memory ~1.6 GB with concept (3.9 GB at 32), no slower
    show_progress: bool | None = None,
    include_hidden: bool = False,
    video: VideoIndexConfig | None = None,
    spec: str | None = None,
    prefetch_workers: int | None = None,
) -> IndexReport:
    """Index every image and video under ``root`` into the index at ``index_path`` with ``encoder``.

    ``encoder`` is an :class:`Encoder`, or a zero-argument factory returning one together with ``spec`` (the
    spec the factory builds): the factory is called only when a file has to be encoded, or to bind a new
    index, so a re-index with nothing new does not load the model. Videos are embedded per
    :class:`~xmr.video.VideoIndexConfig` (``video``, default settings if None): one vector per file plus one per
    time segment. ``prefetch_workers``: threads that hash, decode and preprocess the next batches while the model
    encodes (default: one per core, at most 4). ``show_progress``: False silent; None/True a bar on a terminal, periodic log lines otherwise
    (None: only when the ``xmr`` logger shows INFO)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if prefetch_workers is None:
        prefetch_workers = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2)
    if _is_factory(encoder):
        if spec is None:
            raise TypeError("index_folder(encoder=<factory>) needs spec=<the spec the factory builds>")
    root_p = Path(root).absolute()
    if not root_p.is_dir():
        raise XmrIndexError(f"{root} is not a folder")
    index_path = Path(index_path).absolute()
    rep = IndexReport(root=str(root_p))
    with index_lock(index_path), IndexStore(index_path, create=True) as store:
        lazy = _LazyEncoder(encoder, store)
        if lazy.loaded:
            store.bind_model(encoder.spec, encoder.dim, encoder.describe())
        elif store.model_spec is None or store.dim is None:
            lazy.get()  # a new index: its dim comes from the model
        elif store.model_spec != spec:
            store.bind_model(spec, store.dim)  # raises: the index holds another model's vectors
        known = store.items_under(rep.root)
        old_skips = store.skipped_under(rep.root)
        found: list[Found] = []
        for ent in walk_media(root_p, exclude=(str(index_path),), include_hidden=include_hidden):
            if isinstance(ent, Skip):
                rep.skipped.append((ent.path, ent.reason))
                store.record_skip(ent.path, rep.root, ent.reason, None, None)
            else:
                found.append(ent)
        rep.seen = len(found)
        present = {f.path for f in found}

        # files that vanished since the last run
        gone = [rec.id for p, rec in known.items() if p not in present]
        rep.removed = store.delete(gone)
        store.forget_skips([p for p in old_skips if p not in present and p not in {s for s, _ in rep.skipped}])

        todo: list[tuple[Found, int | None]] = []  # (file, id of the row it replaces)
        for f in found:
            rec = known.get(f.path)
            prev_skip = old_skips.get(f.path)
            if rec is not None and rec.size == f.size and rec.mtime == f.mtime:
                rep.unchanged += 1
            elif prev_skip is not None and prev_skip[1] == f.size and prev_skip[2] == f.mtime:
                rep.skipped.append((f.path, prev_skip[0]))  # same bad file as last time: not retried
            else:
                todo.append((f, rec.id if rec else None))

        bar = progress(len(todo), "indexing", "file", enabled=show_progress) if todo else progress(0, "", enabled=False)
        video = video or VideoIndexConfig()
        recorded = False
        if any(old is None and f.media_type == "image" for f, old in todo):
            lazy.get()  # new images: the model is needed, so load it now and let the workers preprocess for it
        batches = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
        # hashing, decoding (at the model's draft size) and preprocessing of the next batches overlap with encoding
        prefetch = Prefetcher(batches, lambda item: (item[0].path, item[0].media_type == "image"),
                              lambda: _prefetch_setup(lazy), workers=prefetch_workers)
        try:
            for batch, prepared in prefetch:
                if _encode_batch(store, lazy, batch, prepared, rep, batch_size, video) and not recorded:
                    # how this run sampled videos (FramePlan, windows): shown by `xmr info`
                    store.set_meta(VIDEO_SETTINGS_KEY, json.dumps(video.to_dict()))
                    recorded = True
                bar.update(len(batch))
        finally:
            bar.close()
            rep.total = store.count()
        store.sync_faiss()
        rep.total = store.count()
    return rep


def _prefetch_setup(lazy: _LazyEncoder):
    """(draft size, preprocess) for the prefetch workers: the loaded model's, else full decode and no preprocessing.
    An encoder-like object without the split API (a pool of remote encoders) gets decoded images."""
    if not lazy.loaded:
        return None, None
    enc = lazy.get()
    return getattr(enc, "image_draft_size", None), getattr(enc, "preprocess_images", None)


def _encode_batch(store: IndexStore, encoder: _LazyEncoder, batch, prepared: list[Prepared], rep: IndexReport,
                  batch_size: int, video_cfg: VideoIndexConfig) -> int:
    """Encode and commit one batch of files (hashed, decoded and preprocessed by the prefetch workers); returns how
    many videos were indexed."""
    images, pixels, metas, replace, clear = [], [], [], [], []
    videos = 0
    for (f, old_id), prep in zip(batch, prepared):
        if prep.error is not None:
            _skip(store, rep, f, prep.error)
            continue
        digest = prep.digest
        if old_id is not None:
            rec = store.get_items([old_id]).get(old_id)
            if rec is not None and rec.sha256 == digest:
                store.touch(old_id, f.size, f.mtime)  # only the timestamp moved
                rep.unchanged += 1
                continue
        if f.media_type == "video":
            videos += _encode_video(store, encoder, f, digest, old_id, rep, batch_size, video_cfg)
            continue
        if prep.media_error is not None:
            _skip(store, rep, f, prep.media_error.reason)
            if old_id is not None:  # it was good before and is bad now: drop the stale vector
                rep.removed += store.delete([old_id])
            continue
        (pixels if prep.pixels is not None else images).append(prep.pixels if prep.pixels is not None else prep.image)
        metas.append((f, digest, prep.size))
        clear.append(f.path)
        if old_id is not None:
            replace.append(old_id)
            rep.updated += 1
        else:
            rep.added += 1
    if not metas:
        return videos
    enc = encoder.get()
    if images and pixels:  # a batch prepared partly before the model loaded: keep the files' order
        raise AssertionError("prefetch mixed preprocessed and raw images in one batch")
    vecs = (enc.encode_preprocessed(pixels) if pixels
            else enc.encode_images(images, batch_size=batch_size, show_progress=False))
    new = [NewItem(f.path, rep.root, f.size, f.mtime, digest, f.media_type, w, h, v)
           for (f, digest, (w, h)), v in zip(metas, vecs)]
    store.add_batch(new, replace_ids=replace, clear_skips=clear)
    return videos


def _encode_video(store: IndexStore, encoder: _LazyEncoder, f: Found, digest: str, old_id: int | None, rep: IndexReport,
                  batch_size: int, cfg: VideoIndexConfig) -> bool:
    """Embed one video and commit its item row and segment rows in one transaction (True), or skip it (False)."""
    try:
        emb = embed_video(f.path, encoder.get(), cfg, batch_size=batch_size)  # pooling / kept frames: by capabilities
    except MissingExtraError as e:
        # not the file's fault: reported, but not recorded as a bad file, so it is tried again once PyAV is there
        rep.skipped.append((f.path, f"video support not installed: {e}"))
        return False
    except MediaError as e:
        _skip(store, rep, f, e.reason)
        if old_id is not None:  # it was good before and is bad now: drop the stale vectors
            rep.removed += store.delete([old_id])
        return False
    item = NewItem(f.path, rep.root, f.size, f.mtime, digest, "video", emb.width, emb.height, emb.vector,
                   segments=emb.segments, frames=emb.frames)
    store.add_batch([item], replace_ids=[old_id] if old_id is not None else [], clear_skips=[f.path])
    if old_id is not None:
        rep.updated += 1
    else:
        rep.added += 1
    return True


def _skip(store: IndexStore, rep: IndexReport, f: Found, reason: str) -> None:
    rep.skipped.append((f.path, reason))
    store.record_skip(f.path, rep.root, reason, f.size, f.mtime)
    log.info("skipped %s: %s", f.path, reason)
