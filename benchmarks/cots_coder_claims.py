"""COTS' token level and adaptive momentum filter, CODER's concept level, on ``xmr synth images`` (docs/training.md):
3 seeds, mean +- std, printed as Markdown.

Experiments:

* ``token``: a ``tiny`` dual encoder (``--mode full``) warmed up with InfoNCE for ``--tiny-warm`` epochs (from a
  random start, ``cots`` alone stays at chance on this data), then trained on with ``cots`` (batch + queue negatives,
  task-level KL), without and with the token-level terms (MLM + MVM, weight 1 each) — COTS' claim: token-level
  interaction helps retrieval;
* ``amf``: ``cots`` (queue 256, MoCo negatives as in train_claims.py) on adapter heads over frozen ``--model``
  features, with 20 % and 50 % corrupted pairs, without and with the adaptive momentum filter — COTS' claim: AMF
  lowers the harm of noisy pairs; also how many of the dropped pairs were the corrupted ones;
* ``concept``: ``coder`` (queue 256, beta 5, batch ``--concept-batches``, default 64) on the same adapters, clean
  data, without and with the concept level
  (concept graph from the captions' words, pseudo clustering label prediction) — CODER's claim: the concept level
  helps.

Usage::

    python benchmarks/cots_coder_claims.py --out /tmp/cc [--experiments token amf concept] [--model concept:fast]

The synthetic sets are those of train_claims.py (same seed, 600 images); one torch thread; writes
``--out/results.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_claims import _ms, _run, _sets  # noqa: E402 (the same sets and adapter runs)

TINY = {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "heads": 4, "dim": 64}


def _warm_tiny(manifest: Path, out: Path, seed: int, epochs: int) -> Path:
    """A tiny model trained with InfoNCE from a random start, saved as a ``tiny:`` folder (reused when present)."""
    from xmr.encoders.trained import load_trained_module
    from xmr.train import TrainConfig, train

    tiny_dir = out / "runs" / f"tiny-warm-{manifest.parent.name}-e{epochs}-s{seed}"
    if (tiny_dir / "model.safetensors").is_file():
        return tiny_dir
    run_dir = out / "runs" / f"tiny-warm-run-s{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    train(TrainConfig(dataset=f"manifest:{manifest}", model="tiny", mode="full", loss="infonce", epochs=epochs,
                      batch_size=32, lr=1e-3, seed=seed, tiny={**TINY, "seed": seed}),
          run_dir, show_progress=False, keep_checkpoints=1, save_every=epochs)
    load_trained_module(run_dir)[2].save(tiny_dir)
    return tiny_dir


def _run_tiny(manifest: Path, out: Path, loss: str, seed: int, epochs: int, batch: int, lr: float,
              loss_config: dict, start: Path) -> dict:
    from xmr.train import TrainConfig, train

    tag = abs(hash(json.dumps(loss_config, sort_keys=True))) % 10 ** 6
    run_dir = out / "runs" / f"tiny-{manifest.parent.name}-{loss}-s{seed}-{tag}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = TrainConfig(dataset=f"manifest:{manifest}", model=f"tiny:{start}", mode="full", loss=loss,
                      loss_config=loss_config, epochs=epochs, batch_size=batch, lr=lr, seed=seed)
    t0 = time.perf_counter()
    res = train(cfg, run_dir, show_progress=False, keep_checkpoints=1, save_every=epochs)
    last = res.history[-1]
    return {"rsum": last["rsum"], "t2i_R@1": last["t2i_R@1"], "start_rsum": res.history[0].get("rsum"),
            "seconds": round(time.perf_counter() - t0, 1),
            "logs": {k: v for k, v in last.items() if k in ("mlm", "mvm")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="concept:fast", help="frozen encoder of the adapter runs (default concept:fast)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--tiny-warm", type=int, default=15, help="InfoNCE epochs before the tiny runs (default 15)")
    ap.add_argument("--tiny-epochs", type=int, default=5, help="epochs of the tiny cots runs (default 5)")
    ap.add_argument("--experiments", nargs="+", default=["token", "amf", "concept"])
    ap.add_argument("--concept-batches", type=int, nargs="+", default=[64], help="batch sizes of the concept runs")
    ap.add_argument("--concept-config", type=json.loads, default={"concept_weight": 1.0},
                    help="coder settings of the concept-level row (JSON; default {\"concept_weight\": 1.0})")
    ap.add_argument("--queue-only", action="store_true", help="token runs: queue negatives only (no batch keys)")
    ap.add_argument("--token-weight", type=float, default=1.0, help="weight of MLM and of MVM (default 1)")
    ap.add_argument("--amf-k", type=float, default=2.0, help="AMF threshold: mean - k std (default 2)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    sets = _sets(args.out, args.n, seed=11)
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    rs = lambda runs: _ms([r["rsum"] for r in runs])  # noqa: E731
    if "token" in args.experiments:
        base = {"queue_size": 256, "batch_negatives": not args.queue_only}
        table = {}
        for name, lc in (("instance + task", {**base, "task_weight": 1.0}),
                         ("+ token level (MLM + MVM)", {**base, "task_weight": 1.0, "mlm_weight": args.token_weight,
                                                        "mvm_weight": args.token_weight})):
            runs = [_run_tiny(sets[0.0], args.out, "cots", s, args.tiny_epochs, 32, 1e-3, lc,
                              _warm_tiny(sets[0.0], args.out, s, args.tiny_warm)) for s in args.seeds]
            table[name] = runs
            print(f"token {name}: rsum {rs(runs)} {runs[0]['logs']} ({runs[0]['seconds']} s/run)", flush=True)
        print(f"\nwarm start (InfoNCE, {args.tiny_warm} epochs): rsum {_ms([r['start_rsum'] for r in runs])}")
        print("\n| cots on tiny (full) | rsum | t2i R@1 |\n|---|---|---|")
        for name, runs in table.items():
            print(f"| {name} | {rs(runs)} | {_ms([r['t2i_R@1'] for r in runs])} |")
        results["token"] = table
    if "amf" in args.experiments:
        table = {}
        for noise in (0.2, 0.5):
            for name, lc in (("cots", {"queue_size": 256}),
                             ("cots + AMF", {"queue_size": 256, "amf": True, "amf_k": args.amf_k})):
                runs = [_run(sets[noise], args.out, args.model, "cots", s, args.epochs, 64, 1e-3, lc)
                        for s in args.seeds]
                table[f"{name}@{noise}"] = runs
                print(f"amf {name} {noise}: rsum {rs(runs)} {runs[0]['logs']} ({runs[0]['seconds']} s/run)", flush=True)
        print(f"\nAMF threshold: mean - {args.amf_k} std")
        print("\n| noise | cots | cots + AMF | dropped (share of pairs, last epoch) | precision | recall |"
              "\n|---|---|---|---|---|---|")
        for noise in (0.2, 0.5):
            amf = table[f"cots + AMF@{noise}"]
            meta = json.loads((sets[noise].parent / "synth.json").read_text())
            share = meta["corrupted"] / meta["train"]  # corrupted share of the train pairs
            drop = [r["logs"].get("amf_dropped", 0.0) for r in amf]
            bad = [r["logs"].get("amf_dropped_noisy", 0.0) for r in amf]
            prec = [b / max(d, 1e-9) for b, d in zip(bad, drop)]
            print(f"| {int(noise * 100)} % | {rs(table[f'cots@{noise}'])} | {rs(amf)} | "
                  f"{np.mean(drop):.3f} | {np.mean(prec):.2f} | {np.mean(bad) / share:.2f} |")
        results["amf"] = table
    if "concept" in args.experiments:
        table = {}
        for batch in args.concept_batches:
            for name, lc in (("coder", {"queue_size": 256}),
                             ("coder + concept level", {"queue_size": 256, **args.concept_config})):
                runs = [_run(sets[0.0], args.out, args.model, "coder", s, args.epochs, batch, 1e-3, lc)
                        for s in args.seeds]
                table[f"{name}@{batch}"] = runs
                print(f"concept {name} batch {batch}: rsum {rs(runs)} ({runs[0]['seconds']} s/run)", flush=True)
        print(f"\nconcept level: {json.dumps(args.concept_config)}")
        print("\n| batch | coder | coder + concept level |\n|---|---|---|")
        for batch in args.concept_batches:
            print(f"| {batch} | {rs(table[f'coder@{batch}'])} | {rs(table[f'coder + concept level@{batch}'])} |")
        results["concept"] = table
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
