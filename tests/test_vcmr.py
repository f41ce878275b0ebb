"""xmr.eval.vcmr: TVR's standalone evaluator's metrics, hand-computed cases, a re-derivation of the reference's
matrix logic on random submissions, and clear errors for malformed input."""
from __future__ import annotations

import json
import math
from collections import OrderedDict, defaultdict

import numpy as np
import pytest

from xmr.errors import ConfigError
from xmr.eval import vcmr
from xmr.eval.vcmr import temporal_iou

V2I = {"a": 0, "b": 1, "c": 2}
GT = [
    {"vid_name": "a", "duration": 30.0, "ts": [10, 20], "desc": "q one", "type": "v", "desc_id": 1},
    {"vid_name": "b", "duration": 30.0, "ts": [0, 10], "desc": "q two", "type": "t", "desc_id": 2},
]
PREDS = [
    {"desc_id": 1, "predictions": [[1, 10, 20, 0.9], [0, 12, 20, 0.8], [0, 10, 19, 0.7]]},  # IoU 0 (video), .8, .9
    {"desc_id": 2, "predictions": [[1, 0, 6, 0.9], [1, 5, 10, 0.8]]},  # IoU .6, .5
]


def _sub(**tasks):
    return {"video2idx": V2I, **tasks}


def test_hand_computed_vcmr_svmr_vr():
    out = vcmr(GT, _sub(VCMR=PREDS, SVMR=PREDS, VR=PREDS))
    assert list(out) == ["VCMR", "SVMR", "VR", "VCMR_by_type", "SVMR_by_type", "VR_by_type"]
    v = out["VCMR"]
    assert list(v) == [f"{t}-r{k}" for t in (0.5, 0.7) for k in (1, 5, 10, 100)]
    assert (v["0.5-r1"], v["0.7-r1"], v["0.5-r5"], v["0.7-r5"]) == (50.0, 0.0, 100.0, 50.0)
    s = out["SVMR"]  # q1's first prediction is on another video: skipped, so its first on-video one is rank 1
    assert (s["0.5-r1"], s["0.7-r1"], s["0.5-r5"], s["0.7-r5"]) == (100.0, 50.0, 100.0, 50.0)
    assert out["VR"] == {"r1": 50.0, "r5": 100.0, "r10": 100.0, "r100": 100.0}
    bt = out["VCMR_by_type"]
    assert bt["v-0.5-r1"] == 0.0 and bt["t-0.5-r1"] == 100.0 and math.isnan(bt["vt-0.5-r1"])
    assert bt["desc_type_ratio"] == "v 50.0 t 50.0 vt 0.0"


def test_iou_uses_the_hull_and_an_empty_hull_is_zero():
    assert temporal_iou(np.array([[0, 10]]), np.array([5, 15]))[0] == pytest.approx(5 / 15)
    assert temporal_iou(np.array([[5, 5]]), np.array([5, 5]))[0] == 0.0  # not 1: the reference's where=hull != 0
    assert temporal_iou(np.array([[0, 4]]), np.array([6, 10]))[0] == 0.0


def test_rounding_top_k_cut_and_no_type_tables():
    gt = [{"vid_name": "a", "ts": [0, 10], "desc_id": i} for i in range(3)]
    far = [[1, 0, 1, 0.0]] * 100
    preds = [{"desc_id": 0, "predictions": [[0, 0, 10, 1]]},
             {"desc_id": 1, "predictions": far + [[0, 0, 10, 1]]},  # the 101st prediction is never read
             {"desc_id": 2, "predictions": [[2, 0, 10, 1], [0, 0, 9, 1]]}]
    out = vcmr(gt, _sub(VCMR=preds))
    assert list(out) == ["VCMR"]  # no "type" in the rows: no per-type tables
    assert out["VCMR"]["0.5-r1"] == 33.33 and out["VCMR"]["0.5-r5"] == 66.67 and out["VCMR"]["0.5-r100"] == 66.67


def test_didemo_style_rows_need_two_overlapping_spans():
    gt = [{"vid_name": "a", "ts": [[0, 5], [0, 5], [0, 10], [20, 25]], "desc_id": 7}]
    one = vcmr(gt, _sub(VCMR=[{"desc_id": 7, "predictions": [[0, 20, 25, 1]]}]))  # matches one span only
    two = vcmr(gt, _sub(VCMR=[{"desc_id": 7, "predictions": [[0, 0, 5, 1]]}]))  # two identical spans (+ .5 IoU)
    assert one["VCMR"]["0.5-r1"] == 0.0 and two["VCMR"]["0.5-r1"] == 100.0


def test_duplicate_desc_ids_last_row_wins_and_files_load(tmp_path):
    preds = [{"desc_id": 1, "predictions": [[0, 10, 20, 1]]}, PREDS[1], {"desc_id": 1, "predictions": [[2, 0, 1, 1]]}]
    gt_path = tmp_path / "gt.jsonl"
    gt_path.write_text("\n".join(json.dumps(r) for r in GT) + "\n")
    sub_path = tmp_path / "sub.json"
    sub_path.write_text(json.dumps(_sub(VCMR=preds)))
    out = vcmr(str(gt_path), str(sub_path))
    assert out["VCMR"]["0.5-r1"] == 50.0  # q1 judged on its last row (a miss), q2 a hit


@pytest.mark.parametrize("mutate, match", [
    (lambda g, s: g[0].pop("ts"), r"ground_truth row 0 \(desc_id 1\): missing key\(s\) ts"),
    (lambda g, s: g[1].__setitem__("ts", [9, 3]), r"row 1 \(desc_id 2\) ts: start 9.0 is after end 3.0"),
    (lambda g, s: g[1].__setitem__("vid_name", "zzz"), r"row 1 .*'zzz' is not in the submission's video2idx"),
    (lambda g, s: s["VCMR"][1]["predictions"][1].__setitem__(0, 9), r"row 1 \(desc_id 2\) prediction 1: vid_idx 9"),
    (lambda g, s: s["VCMR"][0]["predictions"][2].__setitem__(1, 30), r"row 0 \(desc_id 1\) prediction 2: start 30"),
    (lambda g, s: s["VCMR"][0]["predictions"].__setitem__(0, [0, 1]), r"prediction 0: expected \[vid_idx, st, ed"),
    (lambda g, s: s["VCMR"].pop(), r"1 ground-truth desc_id\(s\) without predictions \(e.g. \[2\]\)"),
    (lambda g, s: s["VCMR"][1].pop("predictions"), r"submission\['VCMR'\] row 1: needs keys desc_id and predictions"),
    (lambda g, s: s.pop("video2idx"), r"missing or empty 'video2idx'"),
    (lambda g, s: s.pop("VCMR"), r"holds none of the tasks"),
    (lambda g, s: s["VCMR"][0]["predictions"][0].__setitem__(2, float("nan")), r"prediction 0: expected a finite"),
])
def test_malformed_input_names_the_row(mutate, match):
    gt = json.loads(json.dumps(GT))
    sub = json.loads(json.dumps(_sub(VCMR=PREDS)))
    mutate(gt, sub)
    with pytest.raises(ConfigError, match=match):
        vcmr(gt, sub)


def test_vr_times_are_not_checked():
    preds = [{"desc_id": 1, "predictions": [[0, 0, -1, 1]]}, {"desc_id": 2, "predictions": [[1, 5, 2, 1]]}]
    assert vcmr(GT, _sub(VR=preds))["VR"]["r1"] == 100.0


# ---------------------------------------------------------------------------------------------------------------
# A re-derivation of the reference's own steps (standalone_eval/eval.py: one padded (n_desc, n_pred, 6) matrix of
# [vid, st, ed, vid_match, correct@t0, correct@t1], then column sums), written independently of xmr.eval.vcmr.


def _reference(gt_rows, sub, task, thds=(0.5, 0.7), topks=(1, 5, 10, 100)):
    by_pred = {e["desc_id"]: e for e in sub[task]}
    by_gt = {e["desc_id"]: e for e in gt_rows}
    mats, types = [], []
    for k, g in by_gt.items():
        m = np.array([p[:3] for p in by_pred[k]["predictions"]][:100], dtype=np.float32)
        types.append({"v": 0, "t": 1, "vt": 2}[g["type"]])
        vm = m[:, 0] == sub["video2idx"][g["vid_name"]]
        cols = [m, vm[:, None]]
        if len(g["ts"]) >= 4:
            acc = defaultdict(list)
            for ts in g["ts"]:
                iou = temporal_iou(m[:, 1:3], np.array(ts, dtype=np.float32)) * vm
                for t in thds:
                    acc[t].append(iou >= t)
            cols += [(sum(acc[t]) >= 2)[:, None] for t in thds]
        else:
            iou = temporal_iou(m[:, 1:3], np.array(g["ts"], dtype=np.float32)) * vm
            cols += [(iou >= t)[:, None] for t in thds]
        mats.append(np.concatenate(cols, axis=1))
    n_pred = max(len(x) for x in mats)
    pad = np.zeros((len(mats), n_pred, 4 + len(thds)), dtype=np.float32)
    for i, x in enumerate(mats):
        pad[i, :len(x)] = x
    out = OrderedDict()
    vm = pad[:, :, 3].astype(bool)
    for i, t in enumerate(thds):
        c = pad[:, :, 4 + i].astype(bool)
        for k in topks:
            if task == "VCMR":
                out[f"{t}-r{k}"] = round(np.mean(np.sum(c[:, :k], axis=1) >= 1) * 100, 2)
            elif task == "SVMR":
                out[f"{t}-r{k}"] = round(np.mean([np.sum(c[j][vm[j]][:k]) >= 1 for j in range(len(c))]) * 100, 2)
    if task == "VR":
        for k in topks:
            out[f"r{k}"] = round(np.mean(np.sum(vm[:, :k], axis=1) >= 1) * 100, 2)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_re_derivation_of_the_reference_on_random_submissions(seed):
    rng = np.random.default_rng(seed)
    names = [f"v{i}" for i in range(6)]
    v2i = {n: int(i) for n, i in zip(names, rng.permutation(100)[:6])}
    gt = []
    for d in range(40):
        dur = float(rng.uniform(20, 60))
        if d % 7 == 0:  # DiDeMo-style rows
            ts = [sorted(rng.uniform(0, dur, 2).round(2).tolist()) for _ in range(4)]
        else:
            st = float(rng.uniform(0, dur - 5))
            ts = [round(st, 2), round(st + float(rng.uniform(1, 15)), 2)]
        gt.append({"vid_name": names[rng.integers(6)], "duration": dur, "ts": ts, "desc_id": 1000 + d,
                   "type": ("v", "t", "vt")[rng.integers(3)], "desc": "x"})
    gt.append(dict(gt[3], ts=[0.0, 3.0]))  # a repeated desc_id: the last row wins in both
    sub = {"video2idx": v2i}
    for task in ("VCMR", "SVMR", "VR"):
        rows = []
        for g in gt[:40]:
            n = int(rng.integers(1, 130))
            preds = []
            for _ in range(n):
                st = float(rng.uniform(0, 50))
                preds.append([v2i[names[rng.integers(6)]], round(st, 1), round(st + float(rng.uniform(0, 12)), 1),
                              float(rng.normal())])
            # some near-hits on the right video
            for _ in range(3):
                j = int(rng.integers(len(preds)))
                ts = g["ts"] if len(g["ts"]) == 2 else g["ts"][0]
                preds[j] = [v2i[g["vid_name"]], ts[0] + float(rng.normal(0, 1)), ts[1] + float(rng.normal(0, 1)), 0.0]
                if preds[j][1] > preds[j][2]:
                    preds[j][1], preds[j][2] = preds[j][2], preds[j][1]
            rows.append({"desc_id": g["desc_id"], "predictions": preds})
        sub[task] = rows
    out = vcmr(gt, sub)
    for task in ("VCMR", "SVMR", "VR"):
        ref = _reference(gt, sub, task)
        assert out[task] == {k: float(v) for k, v in ref.items()}, task
    assert 0 < out["VCMR"]["0.5-r100"] < 100  # not a trivially empty or perfect case
