"""``wds:PATH`` — webdataset tar shards as img2dataset / video2dataset write them (CC3M, CC12M, SBU, WebVid, YFCC)::

    PATH/00000.tar      KEY.jpg  KEY.txt  KEY.json   (one sample = the members sharing KEY, stored together)
    PATH/00001.tar      ...

``PATH`` is a folder of ``*.tar`` shards (sorted by name) or one ``.tar`` file. A sample's key is its member path up
to the first dot of the file name (webdataset's rule: ``a/b.c.jpg`` has key ``a/b`` and extension ``c.jpg``); the
members of one sample are consecutive in the tar. Images: ``jpg``, ``jpeg``, ``png``, ``webp``; caption: ``txt`` (or
the ``caption`` field of ``json``); other ``json`` scalars (url, width, height, ...) are kept as metadata.

Reading uses the standard library's ``tarfile`` (one pass over the members); a tar cut short is refused.

As a retrieval dataset (``load_dataset("wds:/data/cc3m")``) the images are extracted once into
``$XMR_CACHE/wds/<digest of the shard path, size and mtime>/`` (evaluation and training read files), samples
without a caption are left out (as the COCO loader leaves out uncaptioned images) and counted in the log; there are
no splits. ``xmr embed`` reads the tars directly (:func:`iter_tar_samples`), extracting nothing but videos (``mp4`` ... of
video2dataset shards such as WebVid: PyAV decodes a file, so each is written to a temporary file while it is
encoded). The dataset loader keeps image samples only.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
from dataclasses import dataclass, field
from typing import Iterator, Mapping

from ..errors import ConfigError
from ..paths import cache_dir
from .base import DATASETS, Item, RetrievalDataset, take_options

log = logging.getLogger(__name__)

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
VIDEO_EXTS = ("mp4", "webm", "mkv", "mov", "avi", "m4v")  # video2dataset writes mp4


@dataclass
class TarSample:
    """One webdataset sample: ``files`` maps extension (``jpg``, ``txt``, ``json``) -> bytes."""

    shard: str  # absolute path of the tar
    key: str
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def image(self) -> tuple[str, bytes] | None:
        """(extension, bytes) of the sample's image, or None when it has none."""
        ext = next((e for e in IMAGE_EXTS if e in self.files), None)
        return (ext, self.files[ext]) if ext else None

    @property
    def video(self) -> tuple[str, bytes] | None:
        """(extension, bytes) of the sample's video (video2dataset shards), or None."""
        ext = next((e for e in VIDEO_EXTS if e in self.files), None)
        return (ext, self.files[ext]) if ext else None

    @property
    def meta(self) -> dict:
        """The sample's ``json`` member (a dict; {} when absent). ConfigError naming the sample if it is not JSON."""
        raw = self.files.get("json")
        if raw is None:
            return {}
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{self.shard}#{self.key}.json: not valid JSON ({e})") from None
        return obj if isinstance(obj, dict) else {}

    @property
    def caption(self) -> str | None:
        raw = self.files.get("txt")
        text = raw.decode("utf-8", errors="replace") if raw is not None else self.meta.get("caption")
        return text.strip() if isinstance(text, str) and text.strip() else None


def list_shard_files(path: str | os.PathLike, ext: str, what: str) -> list[str]:
    """Sorted absolute paths of the ``*.ext`` shards in folder ``path``, or ``[path]`` for one such file."""
    p = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.isfile(p):
        if not p.endswith(f".{ext}"):
            raise ConfigError(f"{p} is not a .{ext} file ({what} are *.{ext})")
        return [p]
    if not os.path.isdir(p):
        raise ConfigError(f"{what} not found: {p} (give a folder of *.{ext} shards or one .{ext} file)")
    found = sorted(os.path.join(p, n) for n in os.listdir(p) if n.endswith(f".{ext}") and not n.startswith("."))
    if not found:
        raise ConfigError(f"no *.{ext} shards in {p} ({what}: e.g. 00000.{ext} as img2dataset writes them)")
    return found


def _split_key(name: str) -> tuple[str, str]:
    """``"dir/000.c.jpg"`` -> ``("dir/000", "c.jpg")`` (webdataset: the key ends at the first dot of the basename)."""
    folder, base = os.path.split(name)
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext.lower() if dot else "")


def iter_tar_samples(shard: str) -> Iterator[TarSample]:
    """Samples of one tar shard, in tar order. A tar that cannot be read raises ConfigError naming the shard (when
    it breaks mid-way, after the samples read before the damage). A tar cut short is detected: ``tarfile`` stops
    quietly at a truncated header, so the end-of-archive marker (two zero blocks) is checked after the last member."""
    current: TarSample | None = None
    try:
        with tarfile.open(shard, mode="r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                key, ext = _split_key(m.name)
                if not ext or os.path.basename(key).startswith("."):  # no extension, or __MACOSX / .hidden files
                    continue
                if current is None or current.key != key:
                    if current is not None:
                        yield current
                    current = TarSample(shard, key)
                fh = tf.extractfile(m)
                data = fh.read() if fh is not None else b""
                if len(data) != m.size:
                    raise tarfile.ReadError(f"member {m.name} is cut short ({len(data)} of {m.size} bytes)")
                current.files[ext] = data
            end = tf.offset
        with open(shard, "rb") as fh:
            fh.seek(end)
            tail = fh.read(2 * tarfile.BLOCKSIZE)
        if len(tail) < 2 * tarfile.BLOCKSIZE or tail.strip(b"\0"):
            raise tarfile.ReadError(f"truncated: no end-of-archive marker after byte {end}")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ConfigError(f"{shard}: cannot read the tar shard ({e})") from None
    if current is not None:
        yield current


def _extract_dir(shard: str) -> str:
    st = os.stat(shard)
    digest = hashlib.sha256(f"{shard}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return str(cache_dir("wds", f"{os.path.basename(shard)}-{digest}"))


def extract_image(folder: str, key: str, ext: str, data: bytes) -> str:
    """Write ``data`` as ``folder/<key with / as __>.<ext>`` once (atomic) and return the path."""
    path = os.path.join(folder, key.replace("/", "__") + "." + ext)
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return path


@DATASETS.register("wds", help="webdataset tar shards (img2dataset layout): wds:DIR or wds:SHARD.tar")
def load_wds(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    take_options("wds", options, ())
    if split is not None:
        raise ConfigError(f"wds:{arg}: webdataset shards have no splits (asked for {split!r}); "
                          f"put each split in its own folder of shards")
    shards = list_shard_files(arg, "tar", "webdataset shards")
    items, uncaptioned, imageless = [], 0, 0
    for shard in shards:
        folder = _extract_dir(shard)
        for s in iter_tar_samples(shard):
            img, cap = s.image, s.caption
            if img is None:
                imageless += 1
                continue
            if cap is None:
                uncaptioned += 1
                continue
            items.append(Item(media=extract_image(folder, s.key, img[0], img[1]), captions=(cap,), id=s.key))
    if uncaptioned or imageless:
        log.info("wds:%s: left out %d samples without a caption and %d without an image", arg, uncaptioned, imageless)
    if not items:
        raise ConfigError(f"wds:{arg}: no sample has both an image ({'/'.join(IMAGE_EXTS)}) and a caption (txt)")
    return RetrievalDataset.from_items(f"wds:{os.path.basename(os.path.abspath(arg))}", items,
                                       caption_policy=caption_policy, source_files=shards)


__all__ = ["TarSample", "iter_tar_samples", "list_shard_files", "load_wds", "IMAGE_EXTS", "VIDEO_EXTS", "extract_image"]
