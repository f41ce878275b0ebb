"""Hash codes in the index: recall and memory of the ``binary`` backend (what ``xmr index --model hash:DIR`` uses)
against exact float search (``flat``), through the same backend classes and exact re-ranking the first stage runs.

World: :func:`xmr.synth.attributes.attribute_world` as in ``benchmarks/hashing.py`` (the label is the combination of
the first two attribute groups, 30 classes). DHD (:class:`xmr.hashing.DHD`, image + text heads, feature-level views)
is trained on 1,500 items; the gallery holds ``--gallery`` other items, the queries are ``--queries`` held-out
captions (text -> image, as ``xmr search "..."`` on a hash index). Stored vectors are what ``hash:DIR`` stores: the
relaxed codes ``h = tanh(LayerNorm(W y))`` L2-normalised (``bits`` floats in SQLite); the binary backend keeps their
signs (``bits / 8`` bytes), the flat backend the floats.

Per code length and ``rerank_factor`` f: recall@10 of a top-10 search (10 f Hamming candidates, re-ranked exactly)
against flat's exact top 10 over the same relaxed codes, label mAP@100 of a top-100 search (100 f candidates;
shared-label relevance, :func:`xmr.eval.label_map`) of both, the binary top-10 search time per query (batch of all
queries; the exact re-rank is a Python loop) and bytes per item of each FAISS index; 3 seeds, mean +- std.

    OMP_NUM_THREADS=1 python benchmarks/hash_index.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xmr.eval import label_map
from xmr.hashing import DHD, DHDConfig, feature_views
from xmr.index.backends import create_backend, exact_rerank
from xmr.index.backends.base import ArraySource
from xmr.synth.attributes import attribute_world


def _relaxed(head, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        h = head(x).numpy().astype(np.float32)
    return h / np.linalg.norm(h, axis=1, keepdims=True).clip(1e-12)


def _search(backend, q: np.ndarray, vecs: np.ndarray, k: int) -> np.ndarray:
    """The first stage's path: backend candidates, exact re-rank from the stored vectors (ids = row + 1)."""
    _, cand = backend.search(q, backend.candidates(k))
    if backend.exact:
        return cand[:, :k]

    def fetch(ids):
        return ids, vecs[ids - 1]

    return exact_rerank(q, cand, fetch, k)[1]


def run(seed: int, bits_list, factors, gallery: int, queries: int, steps: int, k: int) -> dict:
    n_train = 1500
    w = attribute_world(n_train + gallery + queries, seed=seed, captions_per_item=1, noise=0.6)
    cls = w.values[:, 0] * 5 + w.values[:, 1]
    onehot = np.eye(30, dtype=np.float32)[cls]
    tr = np.arange(n_train)
    ga = np.arange(n_train, n_train + gallery)
    qu = np.arange(n_train + gallery, n_train + gallery + queries)
    x, t = torch.from_numpy(w.image_features), torch.from_numpy(w.text_features)
    out = {}
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
        m.eval()
        vecs = _relaxed(m.image_head, x[ga])
        q = _relaxed(m.text_head, t[qu])
        ids = np.arange(1, gallery + 1, dtype=np.int64)
        flat = create_backend({"name": "flat", "config": {}}, bits)
        flat.build(ArraySource(ids, vecs))
        exact = _search(flat, q, vecs, k)
        out[f"{bits} bits flat mAP@{k}"] = label_map_ids(exact, onehot[qu], onehot[ga], k)
        out[f"{bits} bits flat bytes/item"] = 4.0 * bits
        for f in factors:
            b = create_backend({"name": "binary", "config": {"rerank_factor": f}}, bits)
            b.build(ArraySource(ids, vecs))
            t0 = time.perf_counter()
            got10 = _search(b, q, vecs, 10)  # as `xmr search --k 10`: 10 x rerank_factor Hamming candidates
            secs = time.perf_counter() - t0
            top10 = [len(set(got10[r]) & set(exact[r, :10])) / 10 for r in range(len(q))]
            got = _search(b, q, vecs, k)
            out[f"{bits} bits binary x{f} recall@10"] = float(np.mean(top10))
            out[f"{bits} bits binary x{f} mAP@{k}"] = label_map_ids(got, onehot[qu], onehot[ga], k)
            out[f"{bits} bits binary x{f} ms/query"] = 1000 * secs / len(q)
        out[f"{bits} bits binary bytes/item"] = bits / 8
    return out


def label_map_ids(ranked_ids: np.ndarray, q_labels: np.ndarray, g_labels: np.ndarray, k: int) -> float:
    """mAP@k of ranked gallery ids (1-based): a score matrix that puts the ranked ids first, in order."""
    sims = np.zeros((len(ranked_ids), len(g_labels)), np.float32)
    for r, row in enumerate(ranked_ids):
        row = row[row > 0]
        sims[r, row - 1] = np.arange(len(row), 0, -1, dtype=np.float32)
    return label_map(sims, q_labels, g_labels, k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 4, 10])
    ap.add_argument("--gallery", type=int, default=20000)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--k", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs = [run(s, args.bits, args.factors, args.gallery, args.queries, args.steps, args.k) for s in args.seeds]
    print(f"gallery {args.gallery}, {args.queries} text queries, {len(args.seeds)} seeds (mean ± std)\n")
    print("| measure | value |\n|---|---|")
    for key in runs[0]:
        xs = [r[key] for r in runs]
        print(f"| {key} | {np.mean(xs):.3f} ± {np.std(xs):.3f} |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
