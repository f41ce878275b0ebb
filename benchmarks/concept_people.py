"""Issue 17 measurement: people detectors whose weights ship inside a PyPI wheel (MediaPipe) as extra image features.

ImageNet has no "person" class, yet most Flickr-style captions are about people ("two men", "a group of children").
This script asks whether MediaPipe's bundled face / pose / segmentation models give the ``concept`` adapter
something its 1,000 logits lack. It was measured and NOT adopted (docs/concept.md, "People detectors (MediaPipe)").

Which wheel. ``mediapipe`` 1.x (1.2.3 on the index) ships no model files: its Tasks API needs ``.task`` bundles that
are downloaded, and the legacy ``mp.solutions`` API is gone. ``mediapipe==0.10.21`` is the last release whose wheel
bundles the legacy graphs and their tflite models under ``mediapipe/modules/`` (face_detection_full_range_sparse,
pose_detection, pose_landmark_full, selfie_segmentation, ...), loaded from the wheel's own folder with no download.
It pins ``numpy<2`` and pulls jax / jaxlib, so it is run from a separate virtual environment, never the project's:

    python3 -m venv /tmp/mpvenv21 && /tmp/mpvenv21/bin/pip install mediapipe==0.10.21
    OMP_NUM_THREADS=1 /tmp/mpvenv21/bin/python benchmarks/concept_people.py extract CACHE.npz
    # writes CACHE.people.npy (N x len(COLUMNS), rows in the cache's media order) and CACHE.people.json (timings)

The evaluation runs in the project's environment and needs only numpy (this module imports mediapipe only inside
``extract``): ``python benchmarks/concept_quality.py ablation2 --flickr F.npz --coco C.npz --only people``.

Per image (RGB, full resolution as decoded by PIL), four detectors:

* faces: BlazeFace full-range (``FaceDetection(model_selection=1)``, score >= 0.5) on the whole image, and again on
  a 2 x 2 grid of overlapping tiles (each 60 % of width and height, so small faces in group photos are seen larger);
  whole + tile boxes are merged by greedy non-maximum suppression (IoU 0.3). Columns: face count (whole image only,
  and merged), best score, largest and total face area as a fraction of the image;
* person detector: the BlazePose detector subgraph (``PoseDetectionCpu``) run alone through a three-line graph, which
  returns every person it finds (the ``Pose`` solution keeps only the first). Columns: count (score >= 0.5), best
  score, largest box area fraction;
* pose landmarks: the ``Pose`` solution (BlazePose full, static image mode, segmentation on), one person. Columns:
  presence, fraction of pixels of its person mask > 0.5, the 33 landmarks' (x, y) relative to the hip centre in units
  of the shoulder-hip distance (clipped to +-3; a posture: standing, sitting, arms up), and their visibilities;
* selfie segmentation (general model): mean mask, fraction of pixels > 0.5 in the whole image and in a 3 x 3 grid.

``litert MODULES_DIR`` runs the same tflite files without mediapipe, through ``ai-edge-litert``'s interpreter (any
venv with numpy 2 and ai-edge-litert): the adoption route, if there were a gain to adopt.

:func:`people_block` turns these raw columns into the block that the adapter appends to its image features (counts
one-hot 0 / 1 / 2 / 3+, area fractions as square roots, each part scaled to about unit norm).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

N_LM = 33
COLUMNS = (
    ["faces_whole", "faces_merged", "face_score", "face_area_max", "face_area_sum"]
    + ["persons", "person_score", "person_area_max"]
    + ["pose", "pose_mask"] + [f"lm{i}_{c}" for i in range(N_LM) for c in "xy"] + [f"lm{i}_vis" for i in range(N_LM)]
    + ["seg_mean", "seg_whole"] + [f"seg_{r}{c}" for r in range(3) for c in range(3)]
)
COL = {c: i for i, c in enumerate(COLUMNS)}
PARTS = ("faces", "persons", "pose", "seg")


# ------------------------------------------------------------------------------------------ extraction (mediapipe)
def _nms(boxes: list, iou: float = 0.3) -> list:
    """Greedy NMS over (score, x0, y0, x1, y1) in image-relative coordinates."""
    keep = []
    for b in sorted(boxes, reverse=True):
        ok = True
        for k in keep:
            iw = max(0.0, min(b[3], k[3]) - max(b[1], k[1]))
            ih = max(0.0, min(b[4], k[4]) - max(b[2], k[2]))
            inter = iw * ih
            union = (b[3] - b[1]) * (b[4] - b[2]) + (k[3] - k[1]) * (k[4] - k[2]) - inter
            if union > 0 and inter / union > iou:
                ok = False
                break
        if ok:
            keep.append(b)
    return keep


def _faces(det, im: np.ndarray, x0=0.0, y0=0.0, sx=1.0, sy=1.0) -> list:
    """Face boxes (score, x0, y0, x1, y1) of ``im``, mapped into the frame of which ``im`` is the tile at
    (x0, y0) with relative size (sx, sy)."""
    out = []
    for d in det.process(im).detections or []:
        b = d.location_data.relative_bounding_box
        bx0, by0 = max(b.xmin, 0.0), max(b.ymin, 0.0)
        bx1, by1 = min(b.xmin + b.width, 1.0), min(b.ymin + b.height, 1.0)
        if bx1 > bx0 and by1 > by0:
            out.append((float(d.score[0]), x0 + sx * bx0, y0 + sy * by0, x0 + sx * bx1, y0 + sy * by1))
    return out


class Detectors:
    """The four MediaPipe graphs, loaded once from the installed wheel's model files."""

    def __init__(self):
        try:
            import mediapipe as mp
            from google.protobuf import text_format
            from mediapipe.framework import calculator_pb2
            from mediapipe.python.solution_base import SolutionBase
        except ImportError as e:  # mediapipe >= 0.10.30 has no mp.solutions and no bundled models
            raise SystemExit(f"needs mediapipe==0.10.21 (bundled models, legacy solutions API) in a separate venv: {e}")
        s = mp.solutions
        self.face = s.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
        self.pose = s.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True)
        self.seg = s.selfie_segmentation.SelfieSegmentation(model_selection=0)
        cfg = text_format.Parse(
            'input_stream: "image" output_stream: "detections" '
            'node { calculator: "PoseDetectionCpu" input_stream: "IMAGE:image" '
            'output_stream: "DETECTIONS:detections" }',
            calculator_pb2.CalculatorGraphConfig())
        self.persons = SolutionBase(graph_config=cfg, outputs=["detections"])
        self.ms = {k: 0.0 for k in ("faces_whole", "faces_tiles", "persons", "pose", "seg")}

    def _timed(self, key, fn, *a):
        t = time.perf_counter()
        out = fn(*a)
        self.ms[key] += 1e3 * (time.perf_counter() - t)
        return out

    def features(self, im: np.ndarray) -> np.ndarray:
        f = np.zeros(len(COLUMNS), np.float32)
        h, w = im.shape[:2]
        # faces: whole image, then 2 x 2 overlapping tiles of 60 % x 60 %
        whole = self._timed("faces_whole", _faces, self.face, im)
        tiles = []
        t0 = time.perf_counter()
        for ty in (0.0, 0.4):
            for tx in (0.0, 0.4):
                y0, x0 = int(round(ty * h)), int(round(tx * w))
                crop = np.ascontiguousarray(im[y0:y0 + int(round(0.6 * h)), x0:x0 + int(round(0.6 * w))])
                tiles += _faces(self.face, crop, x0 / w, y0 / h, crop.shape[1] / w, crop.shape[0] / h)
        self.ms["faces_tiles"] += 1e3 * (time.perf_counter() - t0)
        merged = _nms(whole + tiles)
        areas = [(b[3] - b[1]) * (b[4] - b[2]) for b in merged]
        f[COL["faces_whole"]], f[COL["faces_merged"]] = len(whole), len(merged)
        if merged:
            f[COL["face_score"]] = max(b[0] for b in merged)
            f[COL["face_area_max"]], f[COL["face_area_sum"]] = max(areas), min(sum(areas), 1.0)
        # every person the BlazePose detector finds
        dets = [d for d in (self._timed("persons", self.persons.process, {"image": im}).detections or [])
                if d.score[0] >= 0.5]
        f[COL["persons"]] = len(dets)
        if dets:
            f[COL["person_score"]] = max(d.score[0] for d in dets)
            f[COL["person_area_max"]] = max(min(d.location_data.relative_bounding_box.width, 1.0)
                                            * min(d.location_data.relative_bounding_box.height, 1.0) for d in dets)
        # one person's landmarks and mask
        r = self._timed("pose", self.pose.process, im)
        if r.pose_landmarks is not None:
            lm = np.array([(p.x, p.y, p.visibility) for p in r.pose_landmarks.landmark], np.float32)
            hip, sho = lm[[23, 24], :2].mean(0), lm[[11, 12], :2].mean(0)
            scale = max(float(np.linalg.norm(sho - hip)), 1e-3)
            xy = np.clip((lm[:, :2] - hip) / scale, -3, 3)
            f[COL["pose"]] = 1.0
            f[COL["pose_mask"]] = float((r.segmentation_mask > 0.5).mean()) if r.segmentation_mask is not None else 0
            f[COL["lm0_x"]:COL["lm0_x"] + 2 * N_LM] = xy.reshape(-1)
            f[COL["lm0_vis"]:COL["lm0_vis"] + N_LM] = lm[:, 2]
        m = self._timed("seg", self.seg.process, im).segmentation_mask
        f[COL["seg_mean"]], f[COL["seg_whole"]] = float(m.mean()), float((m > 0.5).mean())
        for i in range(3):
            for j in range(3):
                cell = m[i * h // 3:(i + 1) * h // 3, j * w // 3:(j + 1) * w // 3]
                f[COL[f"seg_{i}{j}"]] = float((cell > 0.5).mean())
        return f


def extract(cache: str, out: str | None = None, limit: int | None = None) -> None:
    """Features for every image of a ``concept_quality.py cache`` file, in its media order."""
    from PIL import Image

    media = [str(m) for m in np.load(cache)["media"]][:limit]
    det = Detectors()
    rows = []
    wall, cpu = time.perf_counter(), time.process_time()
    for i, p in enumerate(media):
        with Image.open(p) as im:  # a file that cannot be decoded stops the run (no zero rows)
            rows.append(det.features(np.ascontiguousarray(np.asarray(im.convert("RGB")))))
        if (i + 1) % 50 == 0:
            print(f"{i + 1}/{len(media)}", flush=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = out or str(Path(cache).with_suffix(".people.npy"))
    np.save(out, np.stack(rows))
    import mediapipe as mp

    info = {"cache": cache, "images": len(media), "mediapipe": mp.__version__, "columns": COLUMNS,
            "wall_ms_per_image": 1e3 * wall / len(media), "cpu_ms_per_image": 1e3 * cpu / len(media),
            "component_wall_ms_per_image": {k: v / len(media) for k, v in det.ms.items()}}
    Path(out).with_suffix(".json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: v for k, v in info.items() if k != "columns"}, indent=1))


# -------------------------------------------------------------------------------------- features (numpy only)
def _onehot_count(n: np.ndarray) -> np.ndarray:
    return np.eye(4)[np.minimum(n.astype(int), 3)]


def people_block(raw: np.ndarray, parts=PARTS) -> np.ndarray:
    """The adapter's extra image block from the raw columns: each part about unit norm, the block divided by
    sqrt(number of parts) so it is about unit norm too (the recipe multiplies it by its weight)."""
    c = COL
    out = []
    for part in parts:
        if part == "faces":
            b = np.hstack([_onehot_count(raw[:, c["faces_merged"]]), raw[:, [c["face_score"]]],
                           np.sqrt(raw[:, [c["face_area_max"], c["face_area_sum"]]])]) / np.sqrt(2)
        elif part == "persons":
            b = np.hstack([_onehot_count(raw[:, c["persons"]]), raw[:, [c["person_score"]]],
                           np.sqrt(raw[:, [c["person_area_max"]]])]) / np.sqrt(2)
        elif part == "pose":
            xy = raw[:, c["lm0_x"]:c["lm0_x"] + 2 * N_LM] / 3.0
            vis = raw[:, c["lm0_vis"]:c["lm0_vis"] + N_LM]
            b = np.hstack([raw[:, [c["pose"]]], np.sqrt(raw[:, [c["pose_mask"]]]),
                           xy / np.sqrt(2 * N_LM) * 2, vis / np.sqrt(N_LM)]) / np.sqrt(2)
        elif part == "seg":
            grid = raw[:, c["seg_00"]:c["seg_22"] + 1]
            b = np.hstack([np.sqrt(raw[:, [c["seg_whole"]]]), np.sqrt(grid) / 3.0]) / np.sqrt(2) * 2
        else:
            raise ValueError(f"unknown part {part!r}; one of {PARTS}")
        out.append(b)
    return np.hstack(out) / np.sqrt(len(out))


# ------------------------------------------------------------------------------------- text side (regex counts)
_ONE = r"\b(man|woman|boy|girl|child|kid|baby|person|guy|lady|toddler|player|skier|biker|rider|surfer|climber)\b"
_TWO = r"\b(two|couple|pair|both)\b"
_MANY = (r"\b(three|four|five|six|several|many|group|crowd|team|people|men|women|children|kids|boys|girls|"
         r"players|family|friends|persons)\b")


def caption_counts(texts: list[str]) -> np.ndarray:
    """(N, 4) one-hot of the number of people a caption mentions: none / one / two / three or more. Regex rules on
    lower-cased words, in this order: "two" / "couple" / "pair" / "both" -> two (whatever it qualifies: "two dogs"
    too); else a plural person word or a number from three up -> 3+; else two singular person words ("a man and a
    woman") -> two; one -> one."""
    import re

    out = np.zeros((len(texts), 4))
    for i, t in enumerate(texts):
        t = t.lower()
        ones = len(re.findall(_ONE, t))
        k = 2 if re.search(_TWO, t) else 3 if re.search(_MANY, t) else min(ones, 2)
        out[i, k] = 1.0
    return out


# ------------------------------------------------------------------------------------------ probe (numpy only)
def _auc(s: np.ndarray, y: np.ndarray) -> float:
    o = np.argsort(s, kind="stable")
    r = np.empty(len(s))
    r[o] = np.arange(1, len(s) + 1)
    n1 = y.sum()
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))


def probe(cache: str, seeds: int = 3) -> None:
    """What the detectors know that the logits do not: (1) how their counts agree with the number of people the
    image's captions mention (majority of :func:`caption_counts` over its captions); (2) a ridge probe (fit on one
    half of the images, AUC on the other; 3 seeds x both halves) for "people in the photo" and "two or more people",
    from the adapter's logit features, from :func:`people_block`, and from both."""
    d = np.load(cache)
    raw = np.load(Path(cache).with_suffix(".people.npy"))
    t2i = np.asarray(d["text_to_item"])
    votes = np.zeros((len(raw), 4))
    np.add.at(votes, t2i, caption_counts([str(t) for t in d["texts"]]))
    cls = votes.argmax(1)
    print(f"{cache}: images whose captions mention none / one / two / 3+ people: {np.bincount(cls, minlength=4)}")
    for col in ("faces_whole", "faces_merged", "persons", "pose"):
        det = np.minimum(raw[:, COL[col]].astype(int), 3)
        print(f"  {col:13s} fires on {(det > 0)[cls > 0].mean():.2f} of people photos, {(det > 0)[cls == 0].mean():.2f}"
              f" of the others; count class = caption class on {np.mean(det == cls):.2f}")
    z = d["logits"][:, 1:].mean(1)
    z = z - z.mean(1, keepdims=True)
    z = z / (z.std(1, keepdims=True) * np.sqrt(z.shape[1]))
    P = people_block(raw)
    for tname, y in (("people", cls > 0), ("2+ people", cls >= 2)):
        y = y.astype(int)
        for fname, X in (("logits", z), ("detectors", P), ("logits + detectors", np.hstack([z, P]))):
            X1 = np.hstack([X, np.ones((len(X), 1))])
            res = []
            for seed in range(seeds):
                perm = np.random.default_rng(seed).permutation(len(y))
                h = [perm[: len(y) // 2], perm[len(y) // 2:]]
                for a in (0, 1):
                    tr, te = h[a], h[1 - a]
                    res.append([_auc(X1[te] @ np.linalg.solve(X1[tr].T @ X1[tr] + lam * np.eye(X1.shape[1]),
                                                              X1[tr].T @ (y[tr] - 0.5)), y[te]) for lam in (0.1, 1.0)])
            m, sd = np.mean(res, 0), np.std(res, 0)
            print(f"  probe {tname:9s} from {fname:18s} AUC at ridge 0.1 / 1: {m[0]:.3f} ± {sd[0]:.3f} / "
                  f"{m[1]:.3f} ± {sd[1]:.3f}")


def paired(flickr: str, coco: str, weights=(0.25, 0.5), seeds: int = 3) -> None:
    """Run-by-run differences (people extra at each weight minus the default recipe) under ablation2's halves and
    folds protocols, and halves t2i R@1 / R@10 by how many people the caption mentions (main venv: needs xmr)."""
    import concept_rounds as cr
    from concept_quality import Cached, _metrics

    from xmr.encoders.concept import ConceptConfig, ConceptEncoder

    enc = ConceptEncoder(ConceptConfig())
    ce = enc.class_emb
    F, C = Cached(flickr, enc), Cached(coco, enc)
    F.people, C.people
    base = cr.protocols(cr._DEFAULT, F, C, ce, _metrics, seeds=seeds)
    for w in weights:
        res = cr.protocols(dict(cr._DEFAULT, people=w), F, C, ce, _metrics, seeds=seeds)
        for prot, dirs in (("halves", ("t2i", "i2t")), ("folds", ("t2i",))):
            for d in dirs:
                cells = []
                for k in ("R@1", "R@5", "R@10"):
                    diff = np.array([x[d][k] - y[d][k] for x, y in zip(res[prot], base[prot])])
                    cells.append(f"{k} {diff.mean():+.1f} ± {diff.std():.1f} ({(diff > 0).sum()}/{len(diff)} up)")
                print(f"people {w} minus default, {prot} {d}: " + "; ".join(cells), flush=True)
    # halves, t2i by caption class: rank of the right photo under both recipes
    n = len(F.pm)
    ranks = {k: [] for k in ("default", "people")}
    classes = []
    for seed in range(seeds):
        perm = np.random.default_rng(seed).permutation(n)
        halves = [np.sort(perm[: n // 2]), np.sort(perm[n // 2:])]
        for h in (0, 1):
            A, B = F.subset(halves[h]), F.subset(halves[1 - h])
            classes.append(caption_counts(B.texts).argmax(1))
            for k, r in (("default", cr._DEFAULT), ("people", dict(cr._DEFAULT, people=weights[-1]))):
                s = cr.Recipe(r, [A, C], ce).sims(B)
                right = s[np.arange(len(s)), B.t2i]
                ranks[k].append((s > right[:, None]).sum(1))  # optimistic ties are negligible with float scores
    cls = np.concatenate(classes)
    for c, name in enumerate(("no people", "one person", "two", "3+ / plural")):
        m = cls == c
        cells = [f"{k} R@1 {100 * np.mean(np.concatenate(ranks[k])[m] < 1):.1f} "
                 f"R@10 {100 * np.mean(np.concatenate(ranks[k])[m] < 10):.1f}" for k in ranks]
        print(f"halves t2i, captions mentioning {name} ({m.sum() // (2 * seeds)} per run): " + " | ".join(cells)
              + f"  (people weight {weights[-1]})")


LITERT_MODELS = ("face_detection/face_detection_full_range_sparse.tflite",
                 "face_detection/face_detection_short_range.tflite", "pose_detection/pose_detection.tflite",
                 "selfie_segmentation/selfie_segmentation.tflite")


def litert_check(modules: str, runs: int = 20) -> None:
    """Can the bundled tflite files run without mediapipe (the only route into the project's numpy-2 environment)?
    Loads each with ``ai-edge-litert``'s interpreter (one thread), prints tensor shapes and ms per invoke on a
    random input. Raw outputs only: anchor decoding and NMS are what mediapipe's graphs add."""
    from ai_edge_litert.interpreter import Interpreter

    for f in LITERT_MODELS:
        it = Interpreter(model_path=str(Path(modules) / f), num_threads=1)
        it.allocate_tensors()
        i = it.get_input_details()[0]
        x = np.random.default_rng(0).uniform(-1, 1, i["shape"]).astype(np.float32)
        it.set_tensor(i["index"], x)
        it.invoke()
        t = time.perf_counter()
        for _ in range(runs):
            it.set_tensor(i["index"], x)
            it.invoke()
        ms = (time.perf_counter() - t) / runs * 1e3
        print(f"{f}: in {i['shape'].tolist()}, out {[o['shape'].tolist() for o in it.get_output_details()]}, "
              f"{ms:.1f} ms/invoke")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="MediaPipe features for a cache's images (run in the mediapipe==0.10.21 venv)")
    e.add_argument("cache")
    e.add_argument("--out", default=None)
    e.add_argument("--limit", type=int, default=None)
    pr = sub.add_parser("probe", help="detector counts vs captions, and a ridge probe against the logits (numpy only)")
    pr.add_argument("caches", nargs="+")
    pa = sub.add_parser("paired", help="people extra minus default, run by run, and by caption class (main venv)")
    pa.add_argument("--flickr", required=True)
    pa.add_argument("--coco", required=True)
    pa.add_argument("--weights", type=float, nargs="+", default=[0.25, 0.5])
    li = sub.add_parser("litert", help="run the wheel's tflite files with ai-edge-litert (no mediapipe): shapes, ms")
    li.add_argument("modules", help="the mediapipe==0.10.21 wheel's mediapipe/modules folder")
    args = ap.parse_args()
    if args.cmd == "litert":
        litert_check(args.modules)
    elif args.cmd == "extract":
        extract(args.cache, args.out, args.limit)
    elif args.cmd == "probe":
        for c in args.caches:
            probe(c)
    else:
        paired(args.flickr, args.coco, tuple(args.weights))


if __name__ == "__main__":
    main()
