"""MILES' claim through ``xmr train``: masked visual modelling with injected language semantics as pre-training makes
a video-text dual encoder retrieve better after fine-tuning than contrastive-only pre-training.

World (``xmr synth videos``: coloured shapes that appear briefly, come in order, or move; captions that need the
frames and their order). Per seed ``s``:

* a **pre-training** set: ``--n-pre`` clips (seed 1000 + s, 4 captions each, all in the train split);
* a **downstream** set of other clips: ``--n-ft`` clips (seed 2000 + s, 1 caption, half train, half test).

Arms, with the same tiny space-time transformer (``--mode full --model tiny``), settings and seed:

* ``scratch``: fine-tune on the downstream train split from a random start (no pre-training);
* ``contrastive``: pre-train with ``--loss infonce`` (video-text InfoNCE only), then fine-tune;
* ``miles``: pre-train with ``--loss miles`` (InfoNCE + masked space-time modelling regressing the EMA snapshot
  encoder's tokens), then fine-tune (``--model trained:PRE``).

Fine-tuning is always ``--loss infonce``. Reported: text->video R@1 / R@5 on the downstream test split after
fine-tuning, and zero-shot (the fine-tuning run's epoch-0 evaluation: the pre-trained model before fine-tuning).
Seeds 0, 1, 2: mean +- population std. One torch thread. Usage::

    python benchmarks/miles.py --out /tmp/miles-bench

Results and their reading: docs/training.md, "MILES".
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

TINY = {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "heads": 4, "dim": 64, "context_length": 64}


def _videos(root: Path, n: int, seed: int, captions: int, test_fraction: float) -> str:
    from xmr.synth.videos import generate_videos

    if not (root / "captions.jsonl").is_file():
        generate_videos(root, n=n, seed=seed, size=32, radius=5, frames=8, fps=8, captions=captions,
                        test_fraction=test_fraction)
    return f"manifest:{root / 'captions.jsonl'}"


def _run(out: Path, **kw) -> list[dict]:
    from xmr.train import TrainConfig, train

    kw.setdefault("model", "tiny")
    cfg = TrainConfig(mode="full", tiny=dict(TINY) if kw["model"] == "tiny" else {}, **kw)
    return train(cfg, out, resume=(out / "checkpoints").is_dir(), show_progress=False).history


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n-pre", type=int, default=240)
    ap.add_argument("--n-ft", type=int, default=120)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--epochs-pre", type=int, default=30)
    ap.add_argument("--epochs-ft", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--miles-config", default="{}", help="MILES loss config JSON (e.g. '{\"mask_ratio\": 0.6}')")
    ap.add_argument("--arms", default="scratch,contrastive,miles")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    arms = a.arms.split(",")
    results: dict[str, list[dict]] = {k: [] for k in arms}
    common = dict(frames=a.frames, batch_size=a.batch_size, lr=a.lr)
    for seed in (int(s) for s in a.seeds.split(",")):
        pre = _videos(out / f"data-pre-{seed}", a.n_pre, 1000 + seed, 4, 0.0)
        ft = _videos(out / f"data-ft-{seed}", a.n_ft, 2000 + seed, 1, 0.5)
        for arm in arms:
            t0 = time.perf_counter()
            start = "tiny"
            if arm != "scratch":
                loss = "miles" if arm == "miles" else "infonce"
                lc = json.loads(a.miles_config) if arm == "miles" else {}
                _run(out / f"pre-{arm}-{seed}", dataset=pre, eval_split=None, loss=loss, loss_config=lc,
                     epochs=a.epochs_pre, seed=seed, **common)
                start = f"trained:{out / f'pre-{arm}-{seed}'}"
            hist = _run(out / f"ft-{arm}-{seed}", dataset=ft, model=start, loss="infonce", epochs=a.epochs_ft,
                        seed=seed, **common)
            row = {"seed": seed, "zero_shot_R@1": hist[0]["t2i_R@1"], "R@1": hist[-1]["t2i_R@1"],
                   "R@5": hist[-1]["t2i_R@5"], "seconds": round(time.perf_counter() - t0, 1)}
            results[arm].append(row)
            print(arm, row, flush=True)
    summary = {}
    for arm, rows in results.items():
        summary[arm] = {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows])))
                        for k in ("zero_shot_R@1", "R@1", "R@5")}
    (out / "results.json").write_text(json.dumps({"args": vars(a), "runs": results, "summary": summary}, indent=1))
    print("\n| arm | t2v R@1 after fine-tuning | t2v R@5 | zero-shot t2v R@1 |\n|---|---|---|---|")
    for arm, s in summary.items():
        print(f"| {arm} | {s['R@1'][0]:.1f} ± {s['R@1'][1]:.1f} | {s['R@5'][0]:.1f} ± {s['R@5'][1]:.1f} | "
              f"{s['zero_shot_R@1'][0]:.1f} ± {s['zero_shot_R@1'][1]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
