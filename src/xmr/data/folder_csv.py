"""``csv:DIR`` or ``csv:DIR/FILE.csv`` — a folder of media plus a caption table.

``csv:DIR`` reads ``DIR/captions.csv``. The table has a header row (UTF-8, comma-separated; ``.tsv`` files are
tab-separated) with:

- one media column: ``image``, ``path``, ``file``, ``media`` or ``video``;
- one caption column: ``caption`` or ``text``;
- optional ``split``, ``id``, ``start``, ``end`` (seconds, video moments). Other columns are ignored.

Header names are matched case-insensitively. Several rows may name the same media: they become one item whose
captions are in row order; items keep the order of their first row. Relative paths resolve against the
table's folder (or the ``root`` option). Errors name the file and the 1-based line number.
"""
from __future__ import annotations

import csv
import os
from typing import Mapping

from ..errors import ConfigError
from .base import (
    DATASETS,
    Item,
    RetrievalDataset,
    group_rows,
    require_file,
    resolve_media,
    select_split,
    take_options,
)

DEFAULT_FILE = "captions.csv"
MEDIA_COLUMNS = ("image", "path", "file", "media", "video")
CAPTION_COLUMNS = ("caption", "text")


def _table_path(arg: str) -> str:
    p = os.path.abspath(os.path.expanduser(arg))
    if os.path.isdir(p):
        table = os.path.join(p, DEFAULT_FILE)
        if not os.path.isfile(table):
            others = sorted(n for n in os.listdir(p) if n.lower().endswith((".csv", ".tsv")))
            hint = f" Found {', '.join(others)}: name one, e.g. csv:{os.path.join(p, others[0])}" if others else ""
            raise ConfigError(f"no {DEFAULT_FILE} in {p}.{hint}")
        return table
    return require_file(p, "caption table")


def _one_column(header: list[str], names: tuple[str, ...], what: str, where: str) -> int:
    found = [i for i, h in enumerate(header) if h in names]
    if len(found) != 1:
        problem = "no" if not found else "several"
        raise ConfigError(
            f"{where}: {problem} {what} column in header {header}; give exactly one of {', '.join(names)}"
        )
    return found[0]


def read_caption_table(path: str, *, root: str | None = None) -> list[Item]:
    """Items of a caption table, rows grouped by media (see the module docstring)."""
    path = require_file(path, "caption table")
    base = os.path.abspath(os.path.expanduser(root)) if root else os.path.dirname(path)
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = [h.strip().lower() for h in next(reader, [])]
        if not header:
            raise ConfigError(f"{path}: empty file; expected a header row such as 'image,caption'")
        where = f"{path}, line 1"
        media_col = _one_column(header, MEDIA_COLUMNS, "media", where)
        caption_col = _one_column(header, CAPTION_COLUMNS, "caption", where)
        optional = {k: header.index(k) for k in ("split", "id", "start", "end") if k in header}

        def rows():
            for row in reader:
                where = f"{path}, line {reader.line_num}"
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise ConfigError(f"{where}: {len(row)} fields, the header has {len(header)}")
                media, caption = row[media_col].strip(), row[caption_col].strip()
                if not media:
                    raise ConfigError(f"{where}: empty {header[media_col]!r}")
                if not caption:
                    raise ConfigError(f"{where}: empty {header[caption_col]!r}")
                extra: dict[str, object] = {}
                for k, i in optional.items():
                    v = row[i].strip()
                    if not v:
                        continue
                    if k in ("start", "end"):
                        try:
                            extra[k] = float(v)
                        except ValueError:
                            raise ConfigError(f"{where}: {k!r} must be a number of seconds, got {v!r}") from None
                    else:
                        extra[k] = v
                yield where, resolve_media(media, base), [caption], extra

        return group_rows(rows(), path)


@DATASETS.register("csv", help="media folder + caption table: csv:DIR (DIR/captions.csv) or csv:DIR/FILE.csv")
def load_csv(arg: str, *, split: str | None, caption_policy: str, options: Mapping[str, str]) -> RetrievalDataset:
    opts = take_options("csv", options, ("root",))
    path = _table_path(arg)
    items = select_split(read_caption_table(path, root=opts.get("root")), split, path)
    folder = os.path.basename(os.path.dirname(path))
    name = folder if os.path.basename(path) == DEFAULT_FILE else f"{folder}/{os.path.basename(path)}"
    return RetrievalDataset.from_items(
        f"csv:{name}" + (f"/{split}" if split else ""),
        items,
        caption_policy=caption_policy,
        source_files=[path],
    )


__all__ = ["load_csv", "read_caption_table", "MEDIA_COLUMNS", "CAPTION_COLUMNS", "DEFAULT_FILE"]
