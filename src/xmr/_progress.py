"""Progress for long loops: a tqdm bar on a terminal, plain periodic log lines otherwise (CI logs, nohup, pipes).

tqdm disables itself when stderr is not a TTY, which leaves a long ``xmr index`` silent for minutes. :func:`progress`
returns an object with tqdm's ``update`` / ``close`` (and a context manager): on a TTY it is tqdm itself; elsewhere,
when progress is asked for, it logs ``indexing: 120/900 files (13%), 4.1 files/s, eta 3 min`` through the ``xmr``
logger at INFO every ``interval`` seconds and once at the end.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Callable

log = logging.getLogger("xmr.progress")

#: seconds between two plain progress lines
DEFAULT_INTERVAL = 10.0


def _fmt_eta(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class LineProgress:
    """Periodic plain-text progress lines (tqdm's ``update`` / ``close`` interface)."""

    def __init__(self, total: int | None, desc: str = "", unit: str = "it", *, interval: float = DEFAULT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic, logger: logging.Logger | None = None):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.clock = clock
        self.log = logger or log
        self.n = 0
        self.t0 = self.last = clock()
        self.closed = False

    def line(self) -> str:
        el = max(self.clock() - self.t0, 1e-9)
        rate = self.n / el
        s = f"{self.desc}: {self.n}"
        if self.total:
            s += f"/{self.total} {self.unit}s ({100 * self.n / self.total:.0f}%)"
        else:
            s += f" {self.unit}s"
        s += f", {rate:.1f} {self.unit}s/s"
        if self.total and rate > 0 and self.n < self.total:
            s += f", eta {_fmt_eta((self.total - self.n) / rate)}"
        elif self.n and (not self.total or self.n >= self.total):
            s += f", done in {_fmt_eta(el)}"
        return s

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self.log.info("%s", self.line())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.total or self.n:
                self.log.info("%s", self.line())

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Off:
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress(total: int | None, desc: str, unit: str = "it", *, enabled: bool | None = None,
             interval: float | None = None, stream=None):
    """A progress reporter for ``total`` steps. ``enabled``: False -> silent; True or None -> a tqdm bar when
    ``stream`` (default stderr) is a terminal, else :class:`LineProgress` lines (None: only when the ``xmr`` logger
    shows INFO, i.e. not under ``-q``)."""
    if enabled is False:
        return _Off()
    stream = stream if stream is not None else sys.stderr
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        tty = False
    if tty:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=stream)
    if enabled is None and not log.isEnabledFor(logging.INFO):
        return _Off()
    return LineProgress(total, desc, unit, interval=DEFAULT_INTERVAL if interval is None else interval)
