"""TeachText's claim through ``xmr train``: a student distilled from several frozen teachers beats the same student
trained alone and approaches (or exceeds) the best teacher.

Student: adapters on a frozen ``--student`` encoder (its features cached once). "alone": ``--loss infonce``;
"teachtext": ``--loss teachtext`` (infonce + lambda * Huber to the mean of the cross-modal teachers' caption-image
matrices, + the text-only teachers' caption-caption term) with the same settings and seeds; extra variants change
the loss config. Every model, teachers included, is scored on the evaluation split with

* text -> image retrieval, t2i R@1/5/10 (xmr's ``standard`` protocol, every caption against every image);
* caption -> caption retrieval: each caption queries the other captions of the split, the other captions of its own
  image are the relevant ones; c2c R@1/5/10 = share of queries with a relevant caption in the top k, and mAP.

Teachers are evaluated frozen (a text-only teacher has no t2i). Seeds 0, 1, 2: mean +- population std.

Usage (coco-mini: train2017 to train, val2017 to evaluate)::

    python benchmarks/teachtext.py --data ../shared/data/coco-mini --out /tmp/tt-coco \\
        --student concept:fast --teachers concept:zeroshot,concept:prototype,minilm,text:minilm

``minilm`` is ``concept`` with ``space: text`` (a config file written into OUT): its captions are the raw
all-MiniLM-L6-v2 sentence embeddings (the text tower inside ``concept``), its images the expected class-text
embedding; ``text:minilm`` uses its text tower only (a text-only teacher); ``minilm-center`` the same with one centre
crop. ``train:BASE`` trains a teacher first (``infonce``, same data and settings as the student, seed 100 + its
position) and uses ``trained:OUT/teacher-N``: TeachText's teachers are retrieval models trained on the task with
other embeddings. On ``xmr synth images`` (frozen ``concept`` knows nothing of coloured shapes)::

    xmr synth images --out /tmp/synth-tt --n 600 --seed 11
    python benchmarks/teachtext.py --dataset manifest:/tmp/synth-tt/captions.jsonl --out /tmp/tt-synth \
        --student concept:fast --teachers train:concept:fast,train:concept:zeroshot,train:minilm-center \
        --adapter-projection --adapter-dim 256 --adapter-hidden 512 --lr 1e-3 --batch-size 64 --epochs 15

and the world where the claim shows (the student sees 60 of the 450 training images, the teachers trained above saw
all of them; few60.jsonl = the first 60 train lines + every test line of captions.jsonl)::

    python benchmarks/teachtext.py --dataset manifest:/tmp/synth-tt/few60.jsonl --out /tmp/tt-few60 \
        --student concept:fast --teachers trained:/tmp/tt-synth/teacher-0,trained:/tmp/tt-synth/teacher-1,\
    trained:/tmp/tt-synth/teacher-2 --adapter-projection --adapter-dim 256 --adapter-hidden 512 --lr 1e-3 \
        --batch-size 16 --epochs 50 --variants '{"lambda10": {"lambda_cross": 10.0}}'

Results and their reading: docs/training.md, "TeachText". One torch thread.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def c2c_metrics(emb: np.ndarray, t2i: np.ndarray, ks=(1, 5, 10)) -> dict:
    """(T, d) caption embeddings, (T,) image of each caption -> caption->caption R@k (a same-image caption in the
    top k, the query itself left out) and mAP over the full ranking (queries with no other caption skipped)."""
    s = emb @ emb.T
    np.fill_diagonal(s, -np.inf)
    rel = t2i[:, None] == t2i[None, :]
    np.fill_diagonal(rel, False)
    has = rel.any(axis=1)
    order = np.argsort(-s, axis=1, kind="stable")
    hits = np.take_along_axis(rel, order, axis=1)[has]  # (Q, T) relevance in rank order
    out = {f"c2c_R@{k}": 100.0 * float(hits[:, :k].any(axis=1).mean()) for k in ks}
    prec = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    out["c2c_mAP"] = 100.0 * float(((prec * hits).sum(axis=1) / hits.sum(axis=1)).mean())
    return out


def t2i_metrics(txt: np.ndarray, img: np.ndarray, t2i: np.ndarray) -> dict:
    from xmr.eval import evaluate_sims

    m = evaluate_sims(txt @ img.T, t2i, protocol="standard")
    return {f"t2i_R@{k}": float(m["t2i"][f"R@{k}"]) for k in (1, 5, 10)}


def teacher_row(spec: str, ds) -> dict:
    from xmr.train.features import cached_image_features, cached_text_features
    from xmr.train.teachers import load_teachers

    (t,) = load_teachers((spec,))
    txt, _ = cached_text_features(t.encoder, ds, show_progress=False)
    t2i = np.asarray(ds.text_to_item)
    row = c2c_metrics(txt, t2i)
    if not t.text_only:
        img, _ = cached_image_features(t.encoder, ds, show_progress=False)
        row.update(t2i_metrics(txt, img, t2i))
    return row


def student_row(run: Path, student, ds) -> dict:
    from xmr.encoders.trained import adapted_numpy, load_trained_module
    from xmr.train.features import cached_features

    img, txt, _ = cached_features(student, ds, show_progress=False)
    _, _, module = load_trained_module(run)
    ti, tt = adapted_numpy(module, img, "image"), adapted_numpy(module, txt, "text")
    t2i = np.asarray(ds.text_to_item)
    return {**t2i_metrics(tt, ti, t2i), **c2c_metrics(tt, t2i)}


KEYS = ("t2i_R@1", "t2i_R@5", "t2i_R@10", "c2c_R@1", "c2c_R@5", "c2c_R@10", "c2c_mAP")


def fmt(rows: list[dict], key: str) -> str:
    xs = [r[key] for r in rows if key in r]
    if not xs:
        return "—"
    return f"{np.mean(xs):.1f}" if len(xs) == 1 else f"{np.mean(xs):.1f} ± {np.std(xs):.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="coco-mini folder (sets --dataset coco:DATA, splits train2017/val2017)")
    ap.add_argument("--dataset", default=None, help="training data spec (instead of --data)")
    ap.add_argument("--split", default=None)
    ap.add_argument("--eval-split", default=None)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--student", default="concept:fast", help="frozen encoder the student's adapters sit on")
    ap.add_argument("--teachers", default="concept:zeroshot,concept:prototype,minilm,text:minilm")
    ap.add_argument("--variants", default="{}", help="JSON object: name -> teachtext loss config (besides the default)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--adapter-projection", action="store_true", help="projection heads instead of residual adapters")
    ap.add_argument("--adapter-dim", type=int, default=0)
    ap.add_argument("--adapter-hidden", type=int, default=256)
    ap.add_argument("--retrieval", default="infonce",
                    help="the student's own loss: trained alone with it, and teachtext's retrieval loss (default infonce)")
    ap.add_argument("--retrieval-config", default="{}", help="JSON: the retrieval loss's config (alone and inside)")
    ap.add_argument("--student-captions", default="all",
                    help="caption policy of the student's training split (all, first, firstN); teachers trained here "
                    "use all captions")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from xmr.data import load_dataset
    from xmr.encoders import create_encoder
    from xmr.train import TrainConfig, train

    dataset = args.dataset or f"coco:{args.data}"
    split = args.split or ("train2017" if args.data else "train")
    eval_split = args.eval_split or ("val2017" if args.data else "test")
    args.out.mkdir(parents=True, exist_ok=True)
    minilm = args.out / "minilm.json"  # concept with space "text": its text side is the raw MiniLM embedding
    minilm.write_text(json.dumps({"space": "text"}))
    (args.out / "minilm-center.json").write_text(json.dumps({"space": "text", "views": "center"}))
    common = dict(dataset=dataset, split=split, eval_split=eval_split, epochs=args.epochs, batch_size=args.batch_size,
                  lr=args.lr, adapter_residual=not args.adapter_projection, adapter_dim=args.adapter_dim,
                  adapter_hidden=args.adapter_hidden)
    t0 = time.perf_counter()
    teachers = []
    for i, t in enumerate(args.teachers.split(",")):
        prefix, base = ("text:", t[5:]) if t.startswith("text:") else ("", t)
        trained_here = base.startswith("train:")
        base = base[6:] if trained_here else base
        if base in ("minilm", "minilm-center"):
            base = f"concept:{args.out / (base + '.json')}"
        if trained_here:  # a retrieval model trained here first (infonce) on the same split
            d = args.out / f"teacher-{i}"
            shutil.rmtree(d, ignore_errors=True)
            train(TrainConfig(model=base, loss="infonce", seed=100 + i, **common), d, show_progress=False,
                  keep_checkpoints=1)
            base = f"trained:{d}"
        teachers.append(prefix + base)
    teachers = tuple(teachers)
    print(f"teachers: {', '.join(teachers)} ({time.perf_counter() - t0:.1f} s)", flush=True)
    ev = load_dataset(dataset, split=eval_split)
    rows: dict[str, list[dict]] = {}
    for spec in teachers:
        rows[f"teacher `{spec.replace(str(args.out) + '/', '')}`"] = [teacher_row(spec, ev)]
    student = create_encoder(args.student, device="cpu")
    rows[f"frozen student base `{args.student}`"] = [teacher_row(args.student, ev)]
    print(f"teachers evaluated in {time.perf_counter() - t0:.1f} s", flush=True)
    rc = json.loads(args.retrieval_config)
    rl = {"retrieval": args.retrieval, "retrieval_config": rc} if args.retrieval != "infonce" or rc else {}
    variants = {f"alone ({args.retrieval})": (args.retrieval, rc), "teachtext": ("teachtext", rl)}
    variants.update({f"teachtext {k}": ("teachtext", {**rl, **v}) for k, v in json.loads(args.variants).items()})
    for name, (loss, lc) in variants.items():
        rows[name] = []
        for seed in args.seeds:
            d = args.out / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}-s{seed}"
            shutil.rmtree(d, ignore_errors=True)
            cfg = TrainConfig(model=args.student, loss=loss, loss_config=lc, captions=args.student_captions,
                              teachers=teachers if loss == "teachtext" else (), seed=seed, **common)
            t = time.perf_counter()
            train(cfg, d, show_progress=False, encoder=student, keep_checkpoints=1)
            r = student_row(d, student, ev)
            rows[name].append(r)
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {r[k]:.1f}" for k in KEYS)
                  + f" ({time.perf_counter() - t:.1f} s)", flush=True)
    print(f"\n`python benchmarks/teachtext.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n")
    print("| model | " + " | ".join(KEYS) + " |")
    print("|---|" + "---:|" * len(KEYS))
    for name, rs in rows.items():
        print(f"| {name} | " + " | ".join(fmt(rs, k) for k in KEYS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
