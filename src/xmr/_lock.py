"""One writer at a time: an exclusive, non-blocking ``flock`` on a lock file (``xmr index``, ``xmr embed``)."""
from __future__ import annotations

import contextlib
from typing import IO, Callable, Iterator


@contextlib.contextmanager
def exclusive_lock(fh: IO, busy: Callable[[], Exception]) -> Iterator[None]:
    """Hold an exclusive lock on the open file ``fh`` for the block, then close it. When another process holds
    the lock, raise ``busy()`` at once instead of waiting (a second writer fails fast)."""
    import fcntl

    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy() from None
        yield
    finally:
        fh.close()
