"""DKPH (unsupervised video hashing) on synthetic frame features with hidden class labels: label mAP@K of its codes
against the LSH floor (sign random projection of mean-pooled frames), the float mean-pooled features, and the
reconstruction-only ablation (w_tsim = w_bsim = 0: the paper's claim is that the knowledge-preserving streams
make the code semantic where reconstruction alone does not).

World: :func:`xmr.synth.frame_features.frame_feature_world` (20 classes, 25 frames x 64 dims; 800 train videos,
200 queries, 200 gallery). Labels are used only for evaluation.

    OMP_NUM_THREADS=1 python benchmarks/video_hashing.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xmr.eval import hamming_similarity, label_map
from xmr.hashing import DKPH, DKPHConfig, build_knowledge, dkph_loss, lsh_codes
from xmr.synth.frame_features import frame_feature_world


def train_codes(w, bits: int, seed: int, steps: int, knowledge: bool) -> tuple[np.ndarray, np.ndarray, float]:
    frames = torch.from_numpy(w.frames)
    know = build_knowledge(w.frames[:800], 64, seed=seed)
    torch.manual_seed(seed)
    extra = {} if knowledge else {"w_tsim": 0.0, "w_bsim": 0.0}
    model = DKPH(DKPHConfig(frame_dim=w.frames.shape[2], bits=bits, hidden=64, **extra))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        batch = torch.randperm(800, generator=gen)[:64].numpy()
        loss = dkph_loss(model, frames[:800], batch, know, gen)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.codes(frames[800:1000]), model.codes(frames[1000:1200]), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--ablation-bits", type=int, default=32)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--k", type=int, default=100)
    args = ap.parse_args()
    rows: dict[str, list[float]] = {}
    for seed in args.seeds:
        w = frame_feature_world(1200, seed=seed)
        y = np.eye(int(w.labels.max()) + 1)[w.labels]
        yq, yg = y[800:1000], y[1000:1200]
        mean = w.frames.mean(1)
        mn = mean / np.linalg.norm(mean, axis=1, keepdims=True)
        rows.setdefault("float mean-pooled", []).append(label_map(mn[800:1000] @ mn[1000:1200].T, yq, yg, args.k))
        for bits in args.bits:
            cq, cg, secs = train_codes(w, bits, seed, args.steps, knowledge=True)
            rows.setdefault(f"DKPH-{bits}", []).append(label_map(hamming_similarity(cq, cg), yq, yg, args.k))
            rows.setdefault(f"DKPH-{bits} train s", []).append(secs)
            lq, lg = lsh_codes(mean[800:1000], bits, seed), lsh_codes(mean[1000:1200], bits, seed)
            rows.setdefault(f"LSH-{bits}", []).append(label_map(hamming_similarity(lq, lg), yq, yg, args.k))
        cq, cg, _ = train_codes(w, args.ablation_bits, seed, args.steps, knowledge=False)
        rows.setdefault(f"reconstruction only-{args.ablation_bits}", []).append(
            label_map(hamming_similarity(cq, cg), yq, yg, args.k))
    print(f"| codes | mAP@{args.k} (mean ± std, {len(args.seeds)} seeds) |\n|---|---|")
    for key, vals in rows.items():
        print(f"| {key} | {np.mean(vals):.3f} ± {np.std(vals):.3f} |")


if __name__ == "__main__":
    main()
