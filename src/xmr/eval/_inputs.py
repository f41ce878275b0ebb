"""Turn user inputs (numpy arrays, torch tensors, lists) into arrays the rank code can trust.

Nothing here copies a score matrix: a CPU tensor or an ndarray is viewed as it is, and the caller's data is
never written to. torch is never imported here; a tensor is recognised only when torch is already loaded.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from .._arrays import to_numpy as to_numpy
from ..errors import ConfigError

#: a block of about this many scores is compared at a time (16 MiB of float32)
DEFAULT_BLOCK_ELEMENTS = 1 << 22


def as_scores(sims, name: str = "sims") -> np.ndarray:
    """Validate a (num_texts, num_items) score matrix; returns a read-only view (never a modified copy)."""
    arr = to_numpy(sims, name)
    if arr.ndim != 2:
        raise ConfigError(
            f"{name} must be a 2-D (num_texts, num_items) score matrix, got shape {tuple(arr.shape)}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ConfigError(f"{name} is empty (shape {tuple(arr.shape)}); there is nothing to rank")
    if arr.dtype.kind not in "fiu":
        raise ConfigError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    view = arr.view()
    view.flags.writeable = False  # guard: any accidental in-place write in this package raises
    return view


def as_text_to_item(text_to_item, num_texts: int, num_items: int) -> np.ndarray:
    """Validate ``text_to_item`` (one gallery index per text); returns an int64 array."""
    arr = to_numpy(text_to_item, "text_to_item")
    if arr.ndim != 1:
        raise ConfigError(f"text_to_item must be 1-D (one item index per text), got shape {tuple(arr.shape)}")
    if arr.shape[0] != num_texts:
        raise ConfigError(
            f"text_to_item has {arr.shape[0]} entries but sims has {num_texts} rows; "
            "sims must be (num_texts, num_items) with one text_to_item entry per text (row)"
        )
    if arr.dtype.kind not in "iu":
        raise ConfigError(f"text_to_item must hold integer item indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero((arr < 0) | (arr >= num_items))
    if bad.size:
        i = int(bad[0])
        raise ConfigError(
            f"text_to_item[{i}] = {int(arr[i])} is out of range: sims has {num_items} items (columns), "
            f"so indices must be in [0, {num_items - 1}] ({bad.size} bad entries in total)"
        )
    return arr


def check_chunk_size(chunk_size) -> int | None:
    if chunk_size is None:
        return None
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive number of rows, got {chunk_size!r}")
    return int(chunk_size)


def row_blocks(num_rows: int, num_cols: int, chunk_size: int | None) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges of about ``DEFAULT_BLOCK_ELEMENTS`` scores each (or ``chunk_size`` rows)."""
    step = chunk_size or max(1, DEFAULT_BLOCK_ELEMENTS // max(num_cols, 1))
    for start in range(0, num_rows, step):
        yield start, min(start + step, num_rows)


def check_no_nan(scores: np.ndarray, chunk_size: int | None, name: str = "sims") -> None:
    """Raise if a score is NaN (a NaN compares false with everything, so its rank would be meaningless)."""
    if scores.dtype.kind != "f":
        return
    for start, stop in row_blocks(scores.shape[0], scores.shape[1], chunk_size):
        nan = np.isnan(scores[start:stop])
        if nan.any():
            r, c = np.argwhere(nan)[0]
            raise ConfigError(
                f"{name} contains NaN (first at row {start + int(r)}, column {int(c)}); "
                "fix the scores, or use -inf for pairs that must rank last"
            )
