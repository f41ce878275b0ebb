"""Walk a folder for media files: recursive, follows directory symlinks without looping, never raises for one
bad entry (unreadable folders and broken links are reported as :class:`Skip` records)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

from ..media import media_type_of


@dataclass(frozen=True)
class Found:
    path: str  # absolute path as walked (not symlink-resolved)
    size: int
    mtime: float
    media_type: str  # "image" or "video"


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
            yield Found(e.path, est.st_size, est.st_mtime, mt)
        stack.extend(reversed(subdirs))
