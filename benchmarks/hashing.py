"""Hashing: DHD codes (16/32/64 bits) against the float embedding and the LSH floor, label mAP@K; then memory per
item and Hamming search speed against float inner-product search at 1M items (FAISS, exact both).

World: :func:`xmr.synth.attributes.attribute_world` (4 attribute groups; the *class* used as label is the
combination of the first two groups, 6 x 5 = 30 classes; the other groups are nuisance). Items are split into
train / gallery / query; queries are held-out images (image->image, DHD's setting) and their captions
(text->image through DHD's text head, the cross-modal extension). DHD views are feature-level
(:func:`xmr.hashing.feature_views`).

    OMP_NUM_THREADS=1 python benchmarks/hashing.py --seeds 0 1 2 [--speed-n 1000000]
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch

from xmr.eval import hamming_similarity, label_map
from xmr.hashing import DHD, DHDConfig, feature_views, lsh_codes, pack_bits
from xmr.synth.attributes import attribute_world


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def quality(seed: int, bits_list, k: int, steps: int) -> dict:
    w = attribute_world(3000, seed=seed, captions_per_item=1, noise=0.6)
    cls = w.values[:, 0] * 5 + w.values[:, 1]
    onehot = np.eye(30, dtype=np.float32)[cls]
    tr, ga, qu = np.arange(0, 1500), np.arange(1500, 2500), np.arange(2500, 3000)
    x = torch.from_numpy(w.image_features)
    t = torch.from_numpy(w.text_features)  # captions_per_item=1: caption i belongs to item i
    out = {"float": label_map(_cos(w.image_features[qu], w.image_features[ga]), onehot[qu], onehot[ga], k)}
    for bits in bits_list:
        torch.manual_seed(seed)
        m = DHD(DHDConfig(in_dim=x.shape[1], num_classes=30, bits=bits, text_dim=t.shape[1]))
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.from_numpy(tr)[torch.randperm(tr.size, generator=g)[:128]]
            weak, strong = feature_views(x[idx], g)
            loss = m.loss(weak, strong, torch.from_numpy(onehot[idx.numpy()]), text=t[idx])["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        cg, cq = m.codes(x[ga]), m.codes(x[qu])
        ct = m.codes(t[qu], "text")
        out[f"DHD-{bits}"] = label_map(hamming_similarity(cq, cg), onehot[qu], onehot[ga], k)
        out[f"DHD-{bits} text->image"] = label_map(hamming_similarity(ct, cg), onehot[qu], onehot[ga], k)
        lg = lsh_codes(w.image_features[ga], bits, seed)
        lq = lsh_codes(w.image_features[qu], bits, seed)
        out[f"LSH-{bits}"] = label_map(hamming_similarity(lq, lg), onehot[qu], onehot[ga], k)
    return out


def speed(n: int, dim: int, bits: int, nq: int) -> dict:
    import faiss

    rng = np.random.default_rng(0)
    res = {}
    codes = pack_bits(rng.integers(0, 2, size=(n, bits), dtype=np.uint8))
    qcodes = pack_bits(rng.integers(0, 2, size=(nq, bits), dtype=np.uint8))
    bidx = faiss.IndexBinaryFlat(bits)
    bidx.add(codes)
    t0 = time.perf_counter()
    bidx.search(qcodes, 10)
    res["hamming_qps"] = nq / (time.perf_counter() - t0)
    res["hamming_bytes_per_item"] = bits / 8
    del bidx, codes
    fidx = faiss.IndexFlatIP(dim)
    for start in range(0, n, 100_000):
        chunk = rng.normal(size=(min(100_000, n - start), dim)).astype(np.float32)
        fidx.add(chunk)
    q = rng.normal(size=(nq, dim)).astype(np.float32)
    t0 = time.perf_counter()
    fidx.search(q, 10)
    res["float_qps"] = nq / (time.perf_counter() - t0)
    res["float_bytes_per_item"] = dim * 4
    res["speedup"] = res["hamming_qps"] / res["float_qps"]
    res["memory_ratio"] = res["float_bytes_per_item"] / res["hamming_bytes_per_item"]
    res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--speed-n", type=int, default=1_000_000)
    ap.add_argument("--speed-dim", type=int, default=512)
    ap.add_argument("--speed-bits", type=int, default=64)
    ap.add_argument("--speed-queries", type=int, default=100)
    args = ap.parse_args()
    runs = [quality(s, args.bits, args.k, args.steps) for s in args.seeds]
    table = {key: (float(np.mean([r[key] for r in runs])), float(np.std([r[key] for r in runs]))) for key in runs[0]}
    print(f"| codes | mAP@{args.k} (mean ± std, {len(args.seeds)} seeds) |\n|---|---|")
    for key, (m, s) in table.items():
        print(f"| {key} | {m:.3f} ± {s:.3f} |")
    if args.speed_n:
        print(json.dumps(speed(args.speed_n, args.speed_dim, args.speed_bits, args.speed_queries), indent=1))


if __name__ == "__main__":
    main()
