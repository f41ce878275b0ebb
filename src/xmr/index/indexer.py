"""Incremental folder indexing: walk, diff against the index, encode what is new or changed, drop what is gone.

Only files whose (size, mtime) changed are re-hashed; only files whose content hash changed are re-encoded. Each
batch of images is committed on its own, and each video (its item row and all its segment rows) in its own
transaction, so an interrupted run resumes where it stopped with no duplicates and no half-indexed video.

Memory: a batch holds at most ``batch_size`` decoded images and at most :data:`MAX_BATCH_PIXELS` decoded pixels
(read from each image's header before it is decoded: the batch so far is encoded and committed first when the next
image would not fit; an image bigger than the budget is encoded on its own); each image is itself at most
:data:`xmr.media.image.MAX_PIXELS`. Special files (FIFOs, devices, sockets) are refused from ``stat`` before they
are opened (see :mod:`.walker`), and hashing re-checks the open descriptor.

Speed: worker threads hash the next batches' files and, once the model is loaded, decode them (JPEG draft mode at
the model's size) and build its input (:mod:`.prefetch`) while this thread encodes and commits the current batch.
Those workers hold their decoded images within the same pixel budget (shared between them) and keep only the
model input, which is small and fixed per image; without a model-side preprocessing (a remote encoder pool) images
are decoded here, batch by batch, as above.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, Union

from .._lock import exclusive_lock
from .._progress import progress
from ..errors import ConfigError, MediaError, MissingExtraError, XmrIndexError
from ..media.image import header_pixels, load_image
from ..paths import display_path
from ..video import VideoIndexConfig, embed_video
from .prefetch import PixelBudget, Prefetcher, Prepared, file_sha256  # noqa: F401 - file_sha256 re-exported
from .store import IndexStore, NewItem
from .walker import Found, Skip, walk_media

if TYPE_CHECKING:  # torch loads with the model, not with the index
    from ..encoders.base import Encoder

log = logging.getLogger(__name__)

#: decoded pixels one indexing batch may hold (64 MP: ~190 MB of RGB; eight 8-MP photos). A batch is cut short
#: when the next image would exceed it; a single image over it (up to MAX_PIXELS) is encoded alone.
MAX_BATCH_PIXELS = 64_000_000

#: index meta key holding the video settings (``VideoIndexConfig.to_dict()``) of the last run that indexed videos
VIDEO_SETTINGS_KEY = "video_settings"
#: why an image is skipped by an index whose model embeds whole video clips only
CLIPS_ONLY_IMAGE = ("not indexed: this index's model embeds whole video clips, not images (index images with an "
                    "image model in another index)")


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
    experts: dict | None = None  # the experts' pass (ExpertReport.to_dict()), None when the index has no experts

    def to_dict(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "skipped" and not (k == "experts" and v is None)},
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped]}


def index_lock(path: Path):
    """Exclusive writer lock on the index folder (a second `xmr index` on the same index fails fast)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fh = open(path / ".lock", "w")
    except OSError as e:  # another user's index, a read-only mount: it can be searched, not written
        raise XmrIndexError(f"cannot write index {display_path(str(path))} ({e.strerror or e}); it can still be "
                            f"searched and served read-only") from None
    return exclusive_lock(fh, lambda: XmrIndexError(f"another process is writing index {path}; wait for it to "
                                                     "finish"))


class _LazyEncoder:
    """The encoder, created on first use (a no-op re-index never loads the model)."""

    def __init__(self, encoder: Encoder | Callable[[], Encoder], store: IndexStore):
        self._enc = None if _is_factory(encoder) else encoder
        self._factory = None if self._enc is not None else encoder
        self._store = store
        self.video: VideoIndexConfig | None = None  # the run's video settings, checked against the model

    @property
    def loaded(self) -> bool:
        return self._enc is not None

    def get(self) -> Encoder:
        if self._enc is None:
            enc = self._factory()
            _require_indexable(enc, self.video)
            self._store.bind_model(enc.spec, enc.dim, enc.describe())  # checks the dim against the index
            self._enc = enc
        return self._enc


def _require_indexable(enc, video: VideoIndexConfig | None = None) -> None:
    """Refuse, before the index records the model, an encoder that cannot embed media files (a text-only tower), and
    frame-grid settings a whole-clip video model (``trained:DIR`` of a video run) would not use (it reads its own
    ``clip_frames`` uniform frames per video and per window; ``--segment`` / ``--segment-stride`` apply)."""
    caps = enc.capabilities
    if not (caps.images or caps.sound or caps.clips):
        enc.require("images", "xmr index")
    if caps.clips and video is not None and video != VideoIndexConfig(window=video.window, stride=video.stride):
        raise ConfigError(f"{enc.spec} embeds each video and each --segment window as one clip of its own "
                          f"{enc.clip_frames} uniform frames, not on a frame grid: drop --video-fps / "
                          "--video-max-frames / --frame-snap")


@contextmanager
def _undo_new_index_on_error(path: Path):
    """A run that created the index folder and fails before any model was recorded in it (an unknown model, one
    that cannot index media, a bad option found late) removes that folder again: a failed first ``xmr index`` leaves
    nothing behind that a later run or ``xmr info`` would take for an index."""
    fresh = not path.exists()
    try:
        yield
    except BaseException:
        if fresh and path.is_dir():
            try:
                with IndexStore(path, readonly=True) as st:
                    unbound = st.model_spec is None and st.count() == 0
            except Exception:  # not readable as an index: leave it for the user to look at
                unbound = False
            if unbound:
                shutil.rmtree(path, ignore_errors=True)
        raise


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
    max_batch_pixels: int = MAX_BATCH_PIXELS,
    prefetch_workers: int | None = None,
    experts: Sequence[str] | None = None,
    manifests: Sequence[str] | None = None,
) -> IndexReport:
    """Index every image and video under ``root`` into the index at ``index_path`` with ``encoder``.

    ``encoder`` is an :class:`Encoder`, or a zero-argument factory returning one together with ``spec`` (the
    spec the factory builds): the factory is called only when a file has to be encoded, or to bind a new
    index, so a re-index with nothing new does not load the model. Videos are embedded per
    :class:`~xmr.video.VideoIndexConfig` (``video``, default settings if None): one vector per file plus one per
    time segment. ``show_progress``: False silent; None/True a bar on a terminal, periodic log lines otherwise
    (None: only when the ``xmr`` logger shows INFO). ``max_batch_pixels``: decoded-pixel budget of one batch (and of
    the prefetch workers together). ``prefetch_workers``: threads that hash, decode and preprocess the next batches
    while the model encodes (default: one per core, at most 4). ``experts``: expert names
    (:data:`xmr.registries.EXPERTS`) added to the ones the index already carries; every run then brings each
    carried expert's rows up to date for the items under ``root`` (:mod:`.experts_pass`). ``manifests``: side-text
    manifests (JSON lines) for the ``sidecar`` expert, added to the ones the index records (docs/experts.md)."""
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
    with _undo_new_index_on_error(index_path), index_lock(index_path), IndexStore(index_path, create=True) as store:
        lazy = _LazyEncoder(encoder, store)
        lazy.video = video
        if lazy.loaded:
            _require_indexable(encoder, video)
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
        budget = PixelBudget(max_batch_pixels)
        prefetch = Prefetcher(batches, lambda item: (item[0].path, item[0].media_type == "image"),
                              lambda: _prefetch_setup(lazy, budget), workers=prefetch_workers, hash_file=_hash)
        try:
            for batch, prepared in prefetch:
                if _encode_batch(store, lazy, batch, prepared, rep, batch_size, video, max_batch_pixels) \
                        and not recorded:
                    # how this run sampled videos (FramePlan, windows): shown by `xmr info`
                    store.set_meta(VIDEO_SETTINGS_KEY, json.dumps(_video_settings(video, lazy.get())))
                    recorded = True
                bar.update(len(batch))
        finally:
            bar.close()
            rep.total = store.count()
        names = store.expert_names()
        if experts:
            from ..experts import parse_experts

            from ..experts.base import expert_base

            from ..experts import create_expert

            for n in parse_experts(",".join(experts)):  # audio:DIR replaces an earlier audio / audio:OTHER
                if n not in names:
                    ex = create_expert(n)
                    if hasattr(ex, "check_model"):  # refused before it is recorded: the index keeps its experts
                        ex.check_model(store.model_spec, store.dim)
                names = [m for m in names if expert_base(m) != expert_base(n)] + [n]
            store.set_expert_names(names)
        if manifests:
            settings = store.expert_settings()
            side = settings.setdefault("sidecar", {})
            side["manifests"] = list(dict.fromkeys(side.get("manifests", []) + [os.path.abspath(m) for m in manifests]))
            store.set_expert_settings(settings)
            if "sidecar" not in names:
                names.append("sidecar")
                store.set_expert_names(names)
        if names:
            from .experts_pass import run_experts

            rep.experts = run_experts(store, rep.root, names, lazy.get, show_progress).to_dict()
        store.sync_faiss()
        rep.total = store.count()
    return rep


def _video_settings(video: VideoIndexConfig, encoder) -> dict:
    """What ``xmr info`` shows of how videos were read: the frame plan and windows; for an audio-visual model
    (eao:DIR, eclipse:DIR) its tokens per window instead of the frame plan it does not use."""
    d = video.for_encoder(encoder).to_dict()  # a LEAN student's N uniform frames, when the head declares them
    if getattr(encoder.capabilities, "sound", False):
        from ..video.av import av_settings

        d["av"] = av_settings(encoder)
    if getattr(encoder.capabilities, "clips", False):
        from ..video.clips import clip_settings

        d["clips"] = clip_settings(encoder, windows=True)
    return d


def _prefetch_setup(lazy: _LazyEncoder, budget: PixelBudget):
    """What the prefetch workers do with the next batch's images: decode (at the model's draft size, within
    ``budget``) and preprocess them when the model is loaded and has the split API, else only hash the files."""
    if not lazy.loaded:
        return None
    enc = lazy.get()
    if not getattr(enc, "split_preprocessing", False):  # declared by the encoder; a remote pool has no such API
        return None
    return {"draft": enc.image_draft_size, "preprocess": enc.preprocess_images, "budget": budget}


def _hash(path: str) -> str:
    return file_sha256(path)  # looked up at call time: one function hashes every indexed file


def _encode_batch(store: IndexStore, encoder: _LazyEncoder, batch, prepared: list[Prepared], rep: IndexReport,
                  batch_size: int, video_cfg: VideoIndexConfig, max_batch_pixels: int = MAX_BATCH_PIXELS) -> int:
    """Encode and commit one batch of files, hashed (and, with a loaded model, decoded and preprocessed) by the
    prefetch workers; images decoded here are committed in several transactions when they exceed
    ``max_batch_pixels`` decoded pixels. Returns how many videos were indexed."""
    images, metas, replace, clear = [], [], [], []
    inputs = []  # model inputs built by the workers (then ``images`` stays empty: one batch, one mode)
    videos = 0
    for (f, old_id), prep in zip(batch, prepared):
        if prep.error is not None:
            _skip(store, rep, f, prep.error)
            continue
        digest = prep.digest
        if old_id is not None:
            rec = store.get_items([old_id]).get(old_id)
            if rec is not None and rec.sha256 == digest:
                store.touch(old_id, f.size, f.mtime, f.identity)  # only the timestamp moved
                rep.unchanged += 1
                continue
        if f.media_type == "video":
            videos += _encode_video(store, encoder, f, digest, old_id, rep, batch_size, video_cfg)
            continue
        if not encoder.get().capabilities.images:  # a whole-clip video model: images are reported, not embedded
            _skip(store, rep, f, CLIPS_ONLY_IMAGE)
            if old_id is not None:
                rep.removed += store.delete([old_id])
            continue
        if prep.media_error is None and prep.model_input is None:  # hashed only: decode here, within the budget
            if images and _pixels(images) + (header_pixels(f.path) or 0) > max_batch_pixels:
                _commit_images(store, encoder, images, metas, replace, clear, rep, batch_size)  # before decoding more
                images, metas, replace, clear = [], [], [], []
            try:
                im = load_image(f.path)
            except MediaError as e:
                prep = Prepared(digest=digest, media_error=e)
            else:
                prep = Prepared(digest=digest, size=im.size, image=im)
        if prep.media_error is not None:
            _skip(store, rep, f, prep.media_error.reason)
            if old_id is not None:  # it was good before and is bad now: drop the stale vector
                rep.removed += store.delete([old_id])
            continue
        if prep.model_input is not None:
            inputs.append(prep.model_input)
        else:
            images.append(prep.image)
        metas.append((f, digest, prep.size))
        clear.append(f.path)
        if old_id is not None:
            replace.append(old_id)
            rep.updated += 1
        else:
            rep.added += 1
    if images and inputs:
        raise RuntimeError("internal: one indexing batch mixed decoded images and preprocessed inputs")
    if images or inputs:
        _commit_images(store, encoder, images or inputs, metas, replace, clear, rep, batch_size,
                       preprocessed=bool(inputs))
    return videos


def _pixels(images) -> int:
    return sum(im.width * im.height for im in images)


def _commit_images(store: IndexStore, encoder: _LazyEncoder, images, metas, replace, clear, rep: IndexReport,
                   batch_size: int, preprocessed: bool = False) -> None:
    """Encode decoded ``images`` (or the encoder's ``preprocessed`` inputs) and commit their rows in one
    transaction."""
    enc = encoder.get()
    vecs = (enc.encode_preprocessed(images) if preprocessed
            else enc.encode_images(images, batch_size=batch_size, show_progress=False))
    new = [NewItem(f.path, rep.root, f.size, f.mtime, digest, f.media_type, w, h, v, identity=f.identity)
           for (f, digest, (w, h)), v in zip(metas, vecs)]
    store.add_batch(new, replace_ids=replace, clear_skips=clear)


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
                   segments=emb.segments, frames=emb.frames, identity=f.identity)
    store.add_batch([item], replace_ids=[old_id] if old_id is not None else [], clear_skips=[f.path])
    if old_id is not None:
        rep.updated += 1
    else:
        rep.added += 1
    return True


def _skip(store: IndexStore, rep: IndexReport, f: Found, reason: str) -> None:
    rep.skipped.append((f.path, reason))
    store.record_skip(f.path, rep.root, reason, f.size, f.mtime)
    log.info("skipped %s: %s", display_path(f.path), reason)
