"""Feature-level synthetic moments with a planted retrieval bias (for video corpus moment retrieval claims).

The world (fixed by ``world_seed``): ``num_objects`` objects and ``num_predicates`` predicates, each a random unit
direction in a ``dim``-wide space shared by "text" and "frames" (a CLIP-like joint space, so the sliding-window
cosine of today's index is a meaningful floor). A video is ``num_frames`` clip features (``clip_seconds`` each):
background scene + noise, and ``events_per_video`` non-overlapping events; frames of an event ``(o, p)`` show
``object_weight * object[o] + predicate_weight * predicate[p]`` on top of the background. A query describing an
event is the normalised ``object[o] + predicate_weight * predicate[p] + detail_weight * detail`` plus text noise,
where ``detail`` is a random direction only that event shows (so a query has one right moment in the corpus).

The planted bias (SQuiDNet's "retrieval bias", Yoon et al. ECCV 2022, Sec. 1): every object has one *frequent*
predicate; in a split sampled with ``frequent_share=0.8`` four of five events of an object use it, so "the frames
showing the object" is a shortcut that is right most of the time in training. In a split whose queries use a rare
predicate, the same video (and others) also shows the object with its frequent predicate: the shortcut then finds
the wrong moment. The object's appearance is stronger in the frames than the predicate's (``object_weight`` >
``predicate_weight``), which is what makes the shortcut attractive. Deterministic for its seeds; numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True)
class MomentEvent:
    video: int
    obj: int
    pred: int
    start: int  # first frame
    end: int  # last frame (inclusive)

    def seconds(self, clip_seconds: float) -> tuple[float, float]:
        return self.start * clip_seconds, (self.end + 1) * clip_seconds


@dataclass(frozen=True)
class MomentSplit:
    frames: np.ndarray  # (V, T, D) float32 clip features
    events: tuple[MomentEvent, ...]  # every event of every video
    queries: np.ndarray  # (Q, D) float32, L2-normalised: one query per event in ``query_events``
    object_queries: np.ndarray  # (Q, D) the query's object words alone (what SQuiDNet's biased branch reads)
    query_events: tuple[int, ...]  # index into ``events`` of each query's ground truth
    frequent: np.ndarray  # (Q,) bool: the query's predicate is its object's frequent one
    clip_seconds: float

    def video_names(self) -> list[str]:
        return [f"v{v}" for v in range(len(self.frames))]  # the names xmr.localize.corpus.submission uses

    def ground_truth(self) -> list[dict]:
        """TVR-format ground-truth rows (``vid_name``, ``duration``, ``ts``, ``desc_id``, ``type``) for
        :func:`xmr.eval.vcmr`; ``type`` is ``v`` for frequent-predicate queries and ``vt`` for rare ones."""
        names = self.video_names()
        dur = self.frames.shape[1] * self.clip_seconds
        rows = []
        for q, e in enumerate(self.query_events):
            ev = self.events[e]
            rows.append({"vid_name": names[ev.video], "duration": dur, "ts": list(ev.seconds(self.clip_seconds)),
                         "desc": f"object {ev.obj} does predicate {ev.pred}", "desc_id": q,
                         "type": "v" if self.frequent[q] else "vt"})
        return rows


class MomentWorld:
    """Prototypes of one synthetic world; :meth:`sample` draws splits from it (train and test share the world)."""

    def __init__(self, *, num_objects: int = 8, num_predicates: int = 6, dim: int = 32,
                 object_weight: float = 1.0, predicate_weight: float = 0.4, detail_weight: float = 0.5,
                 world_seed: int = 0):
        if min(num_objects, dim) < 1 or num_predicates < 2:
            raise ConfigError("MomentWorld needs num_objects >= 1, num_predicates >= 2, dim >= 1")
        rng = np.random.default_rng(world_seed)
        def unit(n: int) -> np.ndarray:
            a = rng.normal(size=(n, dim))
            return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)

        self.objects = unit(num_objects)
        self.predicates = unit(num_predicates)
        self.frequent_predicate = rng.integers(0, num_predicates, size=num_objects)
        self.object_weight, self.predicate_weight, self.dim = object_weight, predicate_weight, dim
        self.detail_weight = detail_weight

    def _predicate(self, rng, obj: int, frequent_share: float) -> int:
        fp = int(self.frequent_predicate[obj])
        if rng.random() < frequent_share:
            return fp
        others = [p for p in range(len(self.predicates)) if p != fp]
        return int(rng.choice(others))

    def sample(self, num_videos: int, *, frequent_share: float = 0.8, num_frames: int = 32, events_per_video: int = 2,
               min_len: int = 3, max_len: int = 8, noise: float = 0.5, text_noise: float = 0.3,
               distractors: bool = False, clip_seconds: float = 1.5, seed: int = 0) -> MomentSplit:
        """``num_videos`` videos with one query per event. ``distractors=True`` puts, next to every rare-predicate
        event, an event of the same object with its frequent predicate in the same video (the test condition in
        which the shortcut fails)."""
        if num_videos < 1 or not 0 <= frequent_share <= 1 or not 1 <= min_len <= max_len:
            raise ConfigError("sample needs num_videos >= 1, 0 <= frequent_share <= 1, 1 <= min_len <= max_len")
        if events_per_video * (max_len + 1) > num_frames:
            raise ConfigError(f"{events_per_video} events of up to {max_len} frames do not fit {num_frames} frames")
        rng = np.random.default_rng(seed)
        d = self.dim
        frames = np.empty((num_videos, num_frames, d), dtype=np.float32)
        events: list[MomentEvent] = []
        queries, obj_queries, qev, freq = [], [], [], []
        for v in range(num_videos):
            scene = rng.normal(size=d) / np.sqrt(d)
            frames[v] = scene + noise * rng.normal(size=(num_frames, d)) / np.sqrt(d)
            kinds = []  # (obj, pred, is_query)
            obj = int(rng.integers(len(self.objects)))
            pred = self._predicate(rng, obj, frequent_share)
            kinds.append((obj, pred, True))
            while len(kinds) < events_per_video:
                if distractors and pred != self.frequent_predicate[obj] and len(kinds) == 1:
                    kinds.append((obj, int(self.frequent_predicate[obj]), False))
                else:
                    o2 = int(rng.integers(len(self.objects)))
                    kinds.append((o2, self._predicate(rng, o2, frequent_share), not distractors))
            # non-overlapping placement: cut the video into events_per_video equal slots, one event per slot
            order = rng.permutation(len(kinds))
            slot = num_frames // len(kinds)
            for s, k in enumerate(order):
                o, p, is_query = kinds[k]
                length = int(rng.integers(min_len, max_len + 1))
                st = s * slot + int(rng.integers(0, slot - length + 1))
                ev = MomentEvent(v, o, p, st, st + length - 1)
                detail = rng.normal(size=d) / np.sqrt(d)  # what only this event has (the "red" of "a red pencil")
                frames[v, ev.start:ev.end + 1] += self.object_weight * self.objects[o] + \
                    self.predicate_weight * self.predicates[p] + self.detail_weight * detail
                events.append(ev)
                if is_query:
                    q = self.objects[o] + self.predicate_weight * self.predicates[p] + \
                        self.detail_weight * detail + text_noise * rng.normal(size=d) / np.sqrt(d)
                    queries.append(q / np.linalg.norm(q))
                    obj_queries.append(self.objects[o])
                    qev.append(len(events) - 1)
                    freq.append(p == self.frequent_predicate[o])
        return MomentSplit(frames=frames, events=tuple(events), queries=np.asarray(queries, dtype=np.float32),
                           object_queries=np.asarray(obj_queries, dtype=np.float32), query_events=tuple(qev),
                           frequent=np.asarray(freq, dtype=bool), clip_seconds=clip_seconds)


__all__ = ["MomentEvent", "MomentSplit", "MomentWorld"]
