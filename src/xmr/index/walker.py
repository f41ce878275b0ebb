"""Walk a folder for media files: recursive, follows directory symlinks without looping, never raises for one
bad entry (unreadable folders and broken links are reported as :class:`Skip` records).

Only regular files are yielded: a FIFO, socket or device named ``x.jpg`` (or a symlink to ``/dev/zero``) is a
:class:`Skip` decided from ``stat`` alone, before anything opens it, and so is an image file over the byte limit
of :data:`xmr.media.image.MAX_FILE_BYTES`. Names that are not valid UTF-8 arrive as Python's ``surrogateescape``
strings (``os.fsdecode``) and are walked like any other."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

from ..media import media_type_of
from ..media.image import MAX_FILE_BYTES


@dataclass(frozen=True)
class Found:
    path: str  # absolute path as walked (not symlink-resolved)
    size: int
    mtime: float
    media_type: str  # "image" or "video"
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file (the symlink's target)


@dataclass(frozen=True)
class Skip:
    path: str
    reason: str


def walk_media(root: Union[str, os.PathLike], exclude: tuple[str, ...] = (), include_hidden: bool = False
               ) -> Iterator[Union[Found, Skip]]:
    """Yield :class:`Found` for every media file under ``root`` and :class:`Skip` for entries that cannot be
    read. Hidden entries (name starting with ``.``) are ignored unless ``include_hidden``; paths in ``exclude``
    (e.g. the index folder itself) are not entered. Order is deterministic (sorted names)."""
    root = Path(root).absolute()
    excluded = {os.path.realpath(p) for p in exclude}
    seen_dirs: set[tuple[int, int]] = set()
    stack = [str(root)]
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
        except OSError as e:
            yield Skip(d, f"cannot stat folder ({e.strerror or e})")
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            yield Skip(d, "symlink loop or folder already visited (skipped)")
            continue
        seen_dirs.add(key)
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            yield Skip(d, f"unreadable folder ({e.strerror or e})")
            continue
        subdirs = []
        for e in entries:
            if not include_hidden and e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir(follow_symlinks=True)
            except OSError as err:
                yield Skip(e.path, f"cannot stat ({err.strerror or err})")
                continue
            if is_dir:
                if os.path.realpath(e.path) not in excluded:
                    subdirs.append(e.path)
                continue
            mt = media_type_of(e.name)
            if mt is None:
                continue
            try:
                est = e.stat(follow_symlinks=True)
            except OSError as err:
                reason = "broken symlink" if e.is_symlink() else f"cannot stat ({err.strerror or err})"
                yield Skip(e.path, reason)
                continue
            refused = refusal(est, mt)
            if refused:
                yield Skip(e.path, refused)
                continue
            yield Found(e.path, est.st_size, est.st_mtime, mt, (est.st_dev, est.st_ino))
        stack.extend(reversed(subdirs))


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def refusal(st: os.stat_result, media_type: str) -> str | None:
    """Why a file with this ``stat`` must not be read at all, or None: not a regular file, or an image over the
    byte limit. Decided before the file is opened (reading a FIFO blocks, ``/dev/zero`` never ends)."""
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        return f"not a regular file ({kind}): not read"
    if media_type == "image" and st.st_size > MAX_FILE_BYTES:
        return f"file is {st.st_size} bytes, over the {MAX_FILE_BYTES}-byte image limit: not read"
    return None
