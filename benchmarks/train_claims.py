"""The training papers' claims on ``xmr synth images`` (docs/training.md): 3 seeds, mean +- std, printed as Markdown.

Experiments (adapter heads on frozen features of ``--model``, features cached once):

* ``noise``: InfoNCE, VSE++, NCR, MRL, COTS on sets with 0 %, 20 %, 50 % corrupted pairs (and as many wrong class
  labels, for MRL) — NCR's claim: it degrades far less with noise;
* ``queue``: in-batch InfoNCE vs momentum queues (COTS, CODER) at small batch sizes — more negatives help;
* ``neighbourhood``: VSE++ with and without the semantic-neighbourhood constraints — neighbour overlap between the
  image and text spaces on the test split (overlap@k of each item's k nearest items by image embedding and by
  caption embedding).

Usage::

    python benchmarks/train_claims.py --model concept:fast --out /tmp/claims [--experiments noise queue neighbourhood]

The synthetic sets are written under ``--out`` (same seed, same pictures; only the corrupted pairs differ). Runs one
torch thread (the machine is shared); prints the per-experiment tables and writes ``--out/results.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def _sets(out: Path, n: int, seed: int) -> dict[float, Path]:
    from xmr.synth.images import generate_images

    sets = {}
    for noise in (0.0, 0.2, 0.5):
        d = out / f"synth-noise{int(noise * 100)}"
        sets[noise] = d / "captions.jsonl" if d.is_dir() else generate_images(d, n=n, seed=seed, noise=noise,
                                                                              mislabel=noise)
    return sets


_ENCODERS: dict = {}
#: epochs of the sum of hinges before the hardest-negative hinge (vsepp, ncr, neighbourhood): from random heads the
#: max of hinges alone stays at chance on this data
WARMUP = 5


def _run(manifest: Path, out: Path, model: str, loss: str, seed: int, epochs: int, batch: int, lr: float,
         loss_config: dict | None = None) -> dict:
    import shutil

    from xmr.encoders import create_encoder
    from xmr.train import TrainConfig, train

    enc = _ENCODERS.get(model) or _ENCODERS.setdefault(model, create_encoder(model, device="cpu"))
    run_dir = out / "runs" / f"{manifest.parent.name}-{loss}-b{batch}-s{seed}-{abs(hash(json.dumps(loss_config or {}, sort_keys=True))) % 10**6}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = TrainConfig(dataset=f"manifest:{manifest}", model=model, loss=loss, loss_config=loss_config or {},
                      epochs=epochs, batch_size=batch, lr=lr, seed=seed, adapter_residual=False, adapter_dim=256,
                      adapter_hidden=512)
    t0 = time.perf_counter()
    res = train(cfg, run_dir, show_progress=False, keep_checkpoints=1, encoder=enc, save_every=epochs)
    last = res.history[-1]
    return {"rsum": last["rsum"], "t2i_R@1": last["t2i_R@1"], "i2t_R@1": last["i2t_R@1"], "dir": str(run_dir),
            "seconds": round(time.perf_counter() - t0, 1), "logs": {k: v for k, v in last.items() if k in (
                "noisy_precision", "noisy_recall", "clean_share", "amf_dropped", "amf_dropped_noisy")}}


def _ms(xs) -> str:
    return f"{np.mean(xs):.1f} ± {np.std(xs):.1f}"


def neighbour_overlap(run_dir: str, manifest: Path, k: int) -> float:
    """Mean over test items of |kNN_image(i) ∩ kNN_text(i)| / k, where kNN_image ranks the other test items by image
    embedding and kNN_text by the mean of their captions' embeddings (the trained model, cosine)."""
    import torch

    from xmr.data import load_dataset
    from xmr.train.features import cached_features

    from xmr.encoders.trained import load_trained_module

    _, cfg, adapters = load_trained_module(run_dir)
    ds = load_dataset(f"manifest:{manifest}", split="test")
    base = _ENCODERS[next(iter(_ENCODERS))]  # the frozen encoder the runs shared
    fi, ft, _ = cached_features(base, ds, show_progress=False)
    with torch.no_grad():
        img = adapters.encode_image(torch.from_numpy(fi)).numpy()
        txt = adapters.encode_text(torch.from_numpy(ft)).numpy()
    off = ds.text_offsets
    item_txt = np.stack([txt[off[i]: off[i + 1]].mean(0) for i in range(len(ds))])
    item_txt /= np.linalg.norm(item_txt, axis=1, keepdims=True)

    def knn(x):
        s = x @ x.T
        np.fill_diagonal(s, -np.inf)
        return np.argsort(-s, axis=1)[:, :k]

    a, b = knn(img), knn(item_txt)
    return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(ds))]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="concept", help="frozen encoder for the adapters (default concept)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--n", type=int, default=600, help="synthetic images (default 600: 450 train, 150 test)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--experiments", nargs="+", default=["noise", "queue", "neighbourhood"])
    ap.add_argument("--losses", nargs="+", default=["infonce", "vsepp", "ncr", "mrl", "cots"],
                    help="losses of the noise experiment (to split it over processes)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    sets = _sets(args.out, args.n, seed=11)
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    t_start = time.perf_counter()
    if "noise" in args.experiments:
        settings = {"infonce": None, "vsepp": {"warmup_epochs": WARMUP}, "ncr": {"warmup_epochs": WARMUP},
                    "mrl": None, "cots": {"queue_size": 256}}
        losses = {k: settings.get(k) for k in args.losses}
        table = {}
        for loss, lc in losses.items():
            for noise, manifest in sets.items():
                runs = [_run(manifest, args.out, args.model, loss, s, args.epochs, 64, args.lr, lc) for s in args.seeds]
                table[(loss, noise)] = runs
                print(f"noise {loss:8s} {noise:.1f}: rsum {_ms([r['rsum'] for r in runs])}  "
                      f"t2i R@1 {_ms([r['t2i_R@1'] for r in runs])}  {runs[0]['logs']}  ({runs[0]['seconds']} s/run)",
                      flush=True)
        print("\n| loss | rsum 0 % | rsum 20 % | rsum 50 % | drop 0->50 % |\n|---|---|---|---|---|")
        for loss in losses:
            r = [[x["rsum"] for x in table[(loss, nz)]] for nz in (0.0, 0.2, 0.5)]
            drop = np.asarray(r[0]) - np.asarray(r[2])
            print(f"| {loss} | {_ms(r[0])} | {_ms(r[1])} | {_ms(r[2])} | {_ms(drop)} |")
        results["noise"] = {f"{k[0]}@{k[1]}": v for k, v in table.items()}
    if "queue" in args.experiments:
        table = {}
        for batch in (8, 32):
            for loss, lc in (("infonce", None), ("cots", {"queue_size": 256}), ("coder", {"queue_size": 256})):
                runs = [_run(sets[0.0], args.out, args.model, loss, s, args.epochs, batch, args.lr, lc)
                        for s in args.seeds]
                table[(loss, batch)] = runs
                print(f"queue {loss:8s} batch {batch}: rsum {_ms([r['rsum'] for r in runs])}", flush=True)
        print("\n| batch | infonce (in-batch) | cots (queue 256) | coder (queue 256) |\n|---|---|---|---|")
        for batch in (8, 32):
            print(f"| {batch} | " + " | ".join(_ms([r["rsum"] for r in table[(l, batch)]])
                                             for l in ("infonce", "cots", "coder")) + " |")
        results["queue"] = {f"{k[0]}@{k[1]}": v for k, v in table.items()}
    if "neighbourhood" in args.experiments:
        table = {}
        for loss in ("vsepp", "neighbourhood"):
            runs = [_run(sets[0.0], args.out, args.model, loss, s, args.epochs, 64, args.lr,
                         {"warmup_epochs": WARMUP}) for s in args.seeds]
            for r in runs:
                r["overlap@5"] = neighbour_overlap(r["dir"], sets[0.0], 5)
            table[loss] = runs
            print(f"neighbourhood {loss}: overlap@5 {np.mean([r['overlap@5'] for r in runs]):.3f}", flush=True)
        print("\n| loss | overlap@5 (image vs text space) | rsum |\n|---|---|---|")
        for loss, runs in table.items():
            ov = [100 * r["overlap@5"] for r in runs]
            print(f"| {loss} | {_ms(ov)} % | {_ms([r['rsum'] for r in runs])} |")
        results["neighbourhood"] = table
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\ntotal {results['seconds']} s; results in {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
