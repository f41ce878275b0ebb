"""The experts' pass of ``xmr index --experts ...``: after the items of a folder are indexed, run each expert the
index carries on each item whose inputs changed, embed the rows' texts with the index model's text tower, store them.

Incremental like the rest: for every (item, expert) the expert's :meth:`~xmr.experts.base.Expert.signature`
(media hash, expert version and config, size and mtime of the sidecar / subtitle files it reads; a ``stat`` per
file, nothing decoded) is compared with the stored one; only a changed signature re-runs the expert, so a changed
``photo.json`` re-indexes that item's sidecar rows and nothing else. A file an expert cannot use is recorded with
the reason (``expert_state.reason``, shown by ``xmr info``); the item keeps its visual embedding and other experts.
Each (item, expert) result is one transaction.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .._progress import progress
from ..errors import ConfigError, ExpertSkip, MissingExtraError
from ..paths import display_path

log = logging.getLogger(__name__)


@dataclass
class ExpertReport:
    """What the experts' pass did in one run (per expert name)."""

    ran: dict = field(default_factory=dict)  # expert -> items the expert ran on this run
    rows: dict = field(default_factory=dict)  # expert -> rows written this run
    unchanged: dict = field(default_factory=dict)  # expert -> items whose inputs had not changed
    skipped: list = field(default_factory=list)  # (path, expert, reason) this run
    seconds: dict = field(default_factory=dict)  # expert -> wall time of its extract() calls

    def to_dict(self) -> dict:
        return {"ran": self.ran, "rows": self.rows, "unchanged": self.unchanged, "seconds":
                {k: round(v, 3) for k, v in self.seconds.items()},
                "skipped": [{"path": p, "expert": e, "reason": r} for p, e, r in self.skipped]}


def run_experts(store, root: str, names: Sequence[str], encoder: Callable, show_progress: bool | None = None
                ) -> ExpertReport:
    """Run experts ``names`` on the items of ``store`` under ``root``; ``encoder()`` returns the index's encoder
    (called only when a text has to be embedded)."""
    from ..experts import create_expert

    rep = ExpertReport()
    settings = store.expert_settings()
    experts = [create_expert(n, settings[n]) if settings.get(n) else create_expert(n) for n in names]
    checked: set = set()
    states = store.expert_states()
    items = sorted(store.items_under(root).values(), key=lambda r: r.id)
    todo = []
    for ex in experts:
        rep.ran.setdefault(ex.name, 0)
        rep.rows.setdefault(ex.name, 0)
        rep.unchanged.setdefault(ex.name, 0)
        rep.seconds.setdefault(ex.name, 0.0)
        for rec in items:
            if not ex.applies(rec.media_type):
                continue
            sig = ex.signature(rec.path, rec.sha256)
            old = states.get((rec.id, ex.name))
            if old is not None and old[0] == sig:
                rep.unchanged[ex.name] += 1
            else:
                if hasattr(ex, "check_model") and ex.name not in checked:  # a self-embedding expert (audio)
                    ex.check_model(store.model_spec, store.dim)  # ConfigError for the whole run: not the file's fault
                    checked.add(ex.name)
                todo.append((ex, rec, sig))
    bar = progress(len(todo), "experts", "item", enabled=show_progress) if todo else progress(0, "", enabled=False)
    try:
        for ex, rec, sig in todo:
            t0 = time.perf_counter()
            try:
                rows = ex.extract(rec.path, rec.media_type)
                reason = None
            except ExpertSkip as e:
                rows, reason = [], e.reason
            except MissingExtraError:
                raise  # not the file's fault: the whole run stops with the install hint
            rep.seconds[ex.name] += time.perf_counter() - t0
            vecs = None
            if rows:
                vecs = _row_vectors(ex, rows, encoder)
            store.put_expert_result(rec.id, ex.name, sig, rows, vecs, reason)
            rep.ran[ex.name] += 1
            rep.rows[ex.name] += len(rows)
            if reason is not None:
                rep.skipped.append((rec.path, ex.name, reason))
                log.info("%s skipped %s: %s", ex.name, display_path(rec.path), reason)
            bar.update(1)
    finally:
        bar.close()
    return rep


def _row_vectors(ex, rows, encoder):
    """Each row's vector: its own (an expert that embeds itself, e.g. audio) or its text through the index model's
    text tower."""
    import numpy as np

    need = [i for i, r in enumerate(rows) if r.vector is None]
    out: list = [None if r.vector is None else np.asarray(r.vector, np.float32) for r in rows]
    if need:
        enc = encoder()
        if not enc.capabilities.text:
            raise ConfigError(f"the {ex.name} expert embeds its text with the index model's text tower, and "
                              f"model {enc.spec!r} has none: use experts with a model that encodes text")
        vecs = enc.encode_text([rows[i].text for i in need], show_progress=False)
        for i, v in zip(need, vecs):
            out[i] = np.asarray(v, np.float32)
    return np.stack(out)
