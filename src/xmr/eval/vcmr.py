"""Video corpus moment retrieval metrics, computed exactly as TVR's standalone evaluator computes them.

Reference: Lei et al., "TVR: A Large-Scale Dataset for Video-Subtitle Moment Retrieval" (ECCV 2020), evaluator
``standalone_eval/eval.py`` of jayleicn/TVRetrieval (read, re-implemented; no code copied). Inputs are TVR's own
formats:

* ``ground_truth``: rows of ``tvr_*_release.jsonl`` (a list of dicts, or the path of the jsonl file):
  ``{"vid_name": str, "duration": float, "ts": [st, ed], "desc": str, "desc_id": int, "type": "v"|"t"|"vt"}``;
  DiDeMo-style rows whose ``ts`` is a list of >= 4 ``[st, ed]`` pairs are accepted as the reference accepts them;
* ``submission``: ``{"video2idx": {vid_name: vid_idx}, "VCMR": [...], "SVMR": [...], "VR": [...]}`` (a dict, or
  the path of the json file), each task a list of ``{"desc_id": int, "predictions": [[vid_idx, st, ed, score],
  ...]}`` sorted best first; only the tasks present are evaluated.

The rules, as in the reference:

* only each query's first ``max_pred_per_query`` (100) predictions count; the score entry is never read;
* temporal IoU = ``max(0, min(ed, ed') - max(st, st')) / (max(ed, ed') - min(st, st'))`` (the *hull*, not the
  union: for disjoint spans it differs from the textbook IoU, but the intersection is 0 there anyway), 0 when the
  hull is empty; times and IoU in float32; a prediction on another video has IoU 0;
* a prediction is correct at threshold ``t`` when IoU >= ``t``; with >= 4 ground-truth spans (DiDeMo) when at
  least 2 of them give IoU >= ``t``;
* VCMR ``{t}-r{k}``: share of queries with a correct prediction among the first k; SVMR ``{t}-r{k}``: the same
  among the first k predictions *on the ground-truth video* (other videos' predictions are skipped, not counted);
  VR ``r{k}``: share of queries whose video is among the first k predictions' videos (repeats are not removed);
* values are percentages rounded to 2 decimals (``round(x * 100, 2)`` on a float64);
* ``{task}_by_type``: the same per description type (``v``, ``t``, ``vt``) as a share of all queries of that type
  (``nan`` when a type has none), plus ``desc_type_ratio``; only when every row has a ``type`` (or
  ``use_desc_type=True``);
* the desc_ids of each task must equal the ground truth's (the reference's ``match_number=True``); a desc_id
  repeated in a task or in the ground truth: the last row wins (the reference builds a dict).

Where the reference would crash or silently mis-count, this raises :class:`~xmr.errors.ConfigError` naming the
row instead: a missing key, a ground-truth video absent from ``video2idx``, a ``vid_idx`` that is not in
``video2idx`` (the reference counts it as a miss), ``st > ed`` or a non-finite time in a VCMR / SVMR prediction or
in the ground truth (VR predictions' times are not used and not checked). An empty ``predictions`` list (the
reference crashes on it) counts as no correct prediction.
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError

TASKS = ("VCMR", "SVMR", "VR")
DESC_TYPES = ("v", "t", "vt")
IOU_THRESHOLDS = (0.5, 0.7)
TOPKS = (1, 5, 10, 100)
MAX_PREDICTIONS = 100
#: with this many ground-truth spans or more, a prediction must overlap at least MIN_OVERLAPS of them (DiDeMo)
MULTI_SPAN = 4
MIN_OVERLAPS = 2


def temporal_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of (N, 2) ``[st, ed]`` spans with one ``[st, ed]`` span, TVR's definition (hull as the denominator)."""
    pred = np.asarray(pred, dtype=np.float32).reshape(-1, 2)
    gt = np.asarray(gt, dtype=np.float32)
    inter = np.maximum(0, np.minimum(pred[:, 1], gt[1]) - np.maximum(pred[:, 0], gt[0]))
    hull = np.maximum(pred[:, 1], gt[1]) - np.minimum(pred[:, 0], gt[0])
    return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)


def _pct(x) -> float:
    return float(round(np.float64(x) * 100, 2))  # numpy's rounding of a float64, as the reference rounds


def _load(obj, what: str, jsonl: bool):
    if not isinstance(obj, (str, bytes)) and not hasattr(obj, "__fspath__"):
        return obj
    try:
        with open(obj, encoding="utf-8") as f:
            if not jsonl:
                return json.load(f)
            return [json.loads(line) for line in f if line.strip()]
    except OSError as e:
        raise ConfigError(f"{what} {obj!s} cannot be read: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {obj!s} is not valid JSON{' lines' if jsonl else ''}: {e}") from None


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    if not math.isfinite(float(v)):
        raise ConfigError(f"{where}: expected a finite number, got {v!r}")
    return float(v)


def _span(ts: Any, where: str) -> tuple[float, float]:
    if not isinstance(ts, (list, tuple)) or len(ts) != 2:
        raise ConfigError(f"{where}: a span must be [st, ed], got {ts!r}")
    st, ed = _number(ts[0], where), _number(ts[1], where)
    if st > ed:
        raise ConfigError(f"{where}: start {st} is after end {ed}; give [st, ed] with st <= ed")
    return st, ed


def _ground_truth(rows: Any, video2idx: Mapping[str, int], use_type: bool) -> "OrderedDict[Any, dict]":
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ConfigError("ground_truth must be a non-empty list of TVR rows (or the path of a *_release.jsonl)")
    out: OrderedDict[Any, dict] = OrderedDict()
    for i, row in enumerate(rows):
        where = f"ground_truth row {i}"
        if not isinstance(row, Mapping):
            raise ConfigError(f"{where}: expected an object with vid_name, ts, desc_id, got {type(row).__name__}")
        missing = [k for k in ("desc_id", "vid_name", "ts") + (("type",) if use_type else ()) if k not in row]
        if missing:
            raise ConfigError(f"{where} (desc_id {row.get('desc_id')!r}): missing key(s) {', '.join(missing)}")
        where = f"ground_truth row {i} (desc_id {row['desc_id']!r})"
        name = row["vid_name"]
        if not isinstance(name, str) or name not in video2idx:
            raise ConfigError(f"{where}: vid_name {name!r} is not in the submission's video2idx; "
                              "video2idx must name every ground-truth video")
        ts = row["ts"]
        if isinstance(ts, (list, tuple)) and len(ts) >= MULTI_SPAN:
            spans = [_span(t, f"{where} ts[{j}]") for j, t in enumerate(ts)]
        else:
            spans = [_span(ts, f"{where} ts")]
        if use_type and row["type"] not in DESC_TYPES:
            raise ConfigError(f"{where}: type {row['type']!r} is not one of {', '.join(DESC_TYPES)}")
        out[row["desc_id"]] = {"vid": video2idx[name], "spans": np.asarray(spans, dtype=np.float32),
                               "multi": len(spans) > 1, "type": row.get("type")}
    return out


def _predictions(entries: Any, task: str, known_idx: set, max_pred: int) -> dict:
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"submission[{task!r}] must be a list of {{desc_id, predictions}} objects")
    out: dict = {}
    for i, e in enumerate(entries):
        where = f"submission[{task!r}] row {i}"
        if not isinstance(e, Mapping) or "desc_id" not in e or "predictions" not in e:
            raise ConfigError(f"{where}: needs keys desc_id and predictions")
        where = f"{where} (desc_id {e['desc_id']!r})"
        preds = e["predictions"]
        if not isinstance(preds, (list, tuple)):
            raise ConfigError(f"{where}: predictions must be a list of [vid_idx, st, ed, score]")
        rows = []
        for j, p in enumerate(preds[:max_pred]):
            pw = f"{where} prediction {j}"
            if not isinstance(p, (list, tuple)) or len(p) < 3:
                raise ConfigError(f"{pw}: expected [vid_idx, st, ed, score], got {p!r}")
            vid = _number(p[0], f"{pw} vid_idx")
            if vid != int(vid) or int(vid) not in known_idx:
                raise ConfigError(f"{pw}: vid_idx {p[0]!r} is not a value of the submission's video2idx")
            if task == "VR":
                st, ed = (float(p[1]) if isinstance(p[1], (int, float)) else 0.0,
                          float(p[2]) if isinstance(p[2], (int, float)) else 0.0)
            else:
                st, ed = _span(p[1:3], pw)
            rows.append((vid, st, ed))
        out[e["desc_id"]] = np.asarray(rows, dtype=np.float32).reshape(-1, 3)  # (n_pred, 3) like the reference
    return out


def _correct(pred: np.ndarray, gt: dict, thresholds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(n_pred,) video match and (len(thresholds), n_pred) correctness of one query's predictions."""
    match = pred[:, 0] == gt["vid"]
    rows = []
    for t in thresholds:
        hits = [(temporal_iou(pred[:, 1:3], span) * match) >= t for span in gt["spans"]]
        rows.append(np.sum(hits, axis=0) >= MIN_OVERLAPS if gt["multi"] else hits[0])
    return match, np.asarray(rows, dtype=bool).reshape(len(thresholds), len(pred))


def _task_metrics(task: str, preds: dict, gt: "OrderedDict", thresholds, topks, types) -> tuple[dict, dict]:
    n = len(gt)
    hit: dict[str, np.ndarray] = {}  # metric key -> (n_desc,) bool
    for q, (desc_id, g) in enumerate(gt.items()):
        match, correct = _correct(preds[desc_id], g, thresholds)
        for ti, t in enumerate(thresholds):
            for k in topks:
                if task == "VCMR":
                    ok = bool(correct[ti, :k].any())
                elif task == "SVMR":
                    ok = bool(correct[ti][match][:k].any())
                else:
                    continue
                hit.setdefault(f"{t}-r{k}", np.zeros(n, dtype=bool))[q] = ok
        if task == "VR":
            for k in topks:
                hit.setdefault(f"r{k}", np.zeros(n, dtype=bool))[q] = bool(match[:k].any())
    metrics = OrderedDict((key, _pct(np.mean(v))) for key, v in hit.items())
    by_type: OrderedDict = OrderedDict()
    if types is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            for dt in DESC_TYPES:
                mask = types == dt
                for key, v in hit.items():
                    by_type[f"{dt}-{key}"] = _pct(1.0 * np.sum(np.logical_and(v, mask)) / np.sum(mask))
            by_type["desc_type_ratio"] = "v {} t {} vt {}".format(
                *[_pct(1.0 * np.sum(types == dt) / len(types)) for dt in DESC_TYPES])
    return metrics, by_type


def vcmr(ground_truth, submission, *, iou_thresholds: Iterable[float] = IOU_THRESHOLDS,
         topks: Iterable[int] = TOPKS, max_pred_per_query: int = MAX_PREDICTIONS,
         use_desc_type: bool | None = None) -> "OrderedDict[str, dict]":
    """TVR's metrics for the tasks a submission holds: ``{"VCMR": {"0.5-r1": .., ..}, "SVMR": {..}, "VR":
    {"r1": .., ..}, "VCMR_by_type": {..}, ..}`` (percentages, 2 decimals). See the module docstring for the rules.

    ``use_desc_type``: None (default) reports the per-type tables when every ground-truth row has a ``type``."""
    submission = _load(submission, "submission", jsonl=False)
    rows = _load(ground_truth, "ground truth", jsonl=True)
    if not isinstance(submission, Mapping):
        raise ConfigError("submission must be an object with video2idx and VCMR / SVMR / VR lists")
    video2idx = submission.get("video2idx")
    if not isinstance(video2idx, Mapping) or not video2idx:
        raise ConfigError("submission: missing or empty 'video2idx' ({vid_name: vid_idx})")
    for name, idx in video2idx.items():
        if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)):
            raise ConfigError(f"submission video2idx[{name!r}] = {idx!r}: expected an integer index")
    tasks = [t for t in TASKS if t in submission]
    if not tasks:
        raise ConfigError(f"submission holds none of the tasks {', '.join(TASKS)}; add at least one list")
    thresholds = tuple(float(t) for t in iou_thresholds)
    topks = tuple(int(k) for k in topks)
    if not thresholds or not all(0 < t <= 1 for t in thresholds) or not topks or min(topks) < 1:
        raise ConfigError("iou_thresholds must lie in (0, 1] and topks be positive integers")
    if max_pred_per_query < 1:
        raise ConfigError("max_pred_per_query must be >= 1")
    if use_desc_type is None:
        use_desc_type = isinstance(rows, (list, tuple)) and all(isinstance(r, Mapping) and "type" in r for r in rows)
    gt = _ground_truth(rows, video2idx, use_desc_type)
    types = np.array([g["type"] for g in gt.values()]) if use_desc_type else None
    known = {int(v) for v in video2idx.values()}
    out: OrderedDict[str, dict] = OrderedDict()
    by_type = {}
    for task in tasks:
        preds = _predictions(submission[task], task, known, max_pred_per_query)
        missing = [d for d in gt if d not in preds]
        extra = [d for d in preds if d not in gt]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"{len(missing)} ground-truth desc_id(s) without predictions (e.g. {missing[:3]})")
            if extra:
                parts.append(f"{len(extra)} desc_id(s) not in the ground truth (e.g. {extra[:3]})")
            raise ConfigError(f"submission[{task!r}]: {'; '.join(parts)}; the desc_ids must match the ground truth")
        out[task], by_type[task] = _task_metrics(task, preds, gt, thresholds, topks, types)
    if use_desc_type:
        for task in tasks:
            out[f"{task}_by_type"] = by_type[task]
    return out


__all__ = ["vcmr", "temporal_iou", "TASKS", "IOU_THRESHOLDS", "TOPKS", "MAX_PREDICTIONS"]
