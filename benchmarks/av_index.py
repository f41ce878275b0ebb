"""Everything at Once / ECLIPSE through the user's commands: ``xmr train-av`` on the train clips, ``xmr index
--model eao:DIR`` (or ``eclipse:DIR``) of the test clips, the queries scored against the stored vectors.

    python benchmarks/av_index.py --out av_index.json                 # the numbers in docs/experts_commands.md
    python benchmarks/av_index.py --seeds 0 --n 80 --models eao       # a quick look

Per seed: ``--n`` synthetic 2 s clips with sound (``xmr synth videos --sound``: one coloured shape, two of five
sound events; about half test). The model is trained on the train clips' first captions ("a red circle with a
high beep then a low hum"), ``--epochs``; the test clips are indexed. Queries: each distinct ``sound`` caption and
each distinct ``picture`` caption of the test clips, encoded by the model's text tower (as ``xmr search`` does); a
hit is any test clip with that caption; R@1/5/10 of the index's stored video vectors (what the exact first stage
ranks by; a 2 s clip's one window is the whole clip, so the moments stage changes nothing). For comparison, the
same test clips embedded by the same model **without their sound** (``encode_av(frames, None)``: the model's
video-only embedding of the same frame tokens) and ranked the same way: what the sound adds in the index. Also: index seconds per clip (decode + tokens + model), on this machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KS = (1, 5, 10)


def recalls(scores: np.ndarray, positives: list[set]) -> dict:
    ranks = []
    for q, pos in enumerate(positives):
        best = max(scores[q, j] for j in pos)
        ranks.append(int((scores[q] > best).sum()))
    r = np.array(ranks)
    return {f"R@{k}": float((r < k).mean()) for k in KS}


def run_seed(model: str, seed: int, n: int, epochs: int, work: Path) -> dict:
    import torch

    from xmr.encoders import create_encoder
    from xmr.index import index_folder
    from xmr.index.snapshot import open_reader
    from xmr.synth.sounds import generate_sound_videos
    from xmr.train.av import train_av
    from xmr.video.av import read_spans

    torch.set_num_threads(1)
    d = work / f"{model}{seed}"
    manifest = generate_sound_videos(d / "clips", n=n, seed=100 + seed)
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    train = [x for x in lines if x["split"] == "train"]
    test = [x for x in lines if x["split"] == "test"]
    (d / "train.jsonl").write_text("".join(json.dumps({"media": str(d / "clips" / x["media"]),
                                                       "caption": x["captions"][0]}) + "\n" for x in train))
    gallery = d / "test"
    gallery.mkdir()
    for x in test:
        (gallery / Path(x["media"]).name).symlink_to(d / "clips" / x["media"])
    t0 = time.perf_counter()
    train_av(model, d / "train.jsonl", d / "model", epochs=epochs, seed=seed)
    train_s = time.perf_counter() - t0
    enc = create_encoder(f"{model}:{d / 'model'}")
    t0 = time.perf_counter()
    index_folder(gallery, d / "idx", enc, show_progress=False)
    index_s = (time.perf_counter() - t0) / len(test)
    store, reader = open_reader(d / "idx")
    try:
        by_name = {Path(p).name: r.id for p, r in store.items_under(str(gallery)).items()}
        ids = [by_name[Path(x["media"]).name] for x in test]
        fused = reader.item_vectors(ids)
    finally:
        store.close()
    silent = np.stack([enc.encode_av(read_spans(gallery / Path(x["media"]).name, enc.config)[2][0][0][None], None)[0]
                       for x in test])
    out = {"train_clips": len(train), "test_clips": len(test), "train_seconds": round(train_s, 1),
           "index_seconds_per_clip": round(index_s, 3)}
    for kind in ("sound", "picture"):
        qs = sorted({x[kind] for x in test})
        pos = [{j for j, x in enumerate(test) if x[kind] == q} for q in qs]
        T = enc.encode_text(qs)
        out[kind] = {"queries": len(qs), "index (frames + sound)": recalls(T @ fused.T, pos),
                     "frames only": recalls(T @ silent.T, pos)}
    return out


def summarise(runs, path):
    vals = []
    for r in runs:
        v = r
        for p in path:
            v = v[p]
        vals.append(v)
    s = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.3f} +- {s:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=160, help="clips per seed (about half test)")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--models", nargs="+", default=["eao", "eclipse"], choices=["eao", "eclipse"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res, lines = {}, []
    with tempfile.TemporaryDirectory() as work:
        for model in args.models:
            runs = res[model] = [run_seed(model, s, args.n, args.epochs, Path(work)) for s in args.seeds]
            lines += [f"## {model}: train-av on the train clips, index of the test clips (n={args.n} per seed, "
                      f"{runs[0]['test_clips']} test clips in seed {args.seeds[0]}, {args.epochs} epochs, seeds "
                      f"{args.seeds})", ""]
            for kind in ("sound", "picture"):
                lines += [f"queries about the {kind} ({runs[0][kind]['queries']} in seed {args.seeds[0]}):", "",
                          "| gallery | R@1 | R@5 | R@10 |", "| --- | --- | --- | --- |"]
                for g in ("index (frames + sound)", "frames only"):
                    lines.append(f"| {g} | " + " | ".join(summarise(runs, [kind, g, f"R@{k}"]) for k in KS) + " |")
                lines.append("")
            lines += [f"train seconds {summarise(runs, ['train_seconds'])}; index seconds per clip "
                      f"{summarise(runs, ['index_seconds_per_clip'])}", ""]
    lines.append(f"total {time.perf_counter() - t0:.0f} s")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "runs": res}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
