"""X-Pool (and prototypes) at search time: two-stage (candidates, exact head scores on the top K) vs exhaustive.

X-Pool's video embedding depends on the text, so nothing per video can be precomputed beyond frame features, and an
exhaustive search runs the head on every (query, video) pair. ``xmr search`` instead takes the top K videos by the
query-independent meanP vector stored in the index and re-scores only those (``--candidates K``). This script
measures what that costs in quality and what it saves in time, in one run:

1. quality (synthetic set of benchmarks/video_heads.py: frozen random `tiny` image tower, head (X-Pool, prototypes)
   + GRU text tower trained with symmetric InfoNCE, per seed): text->video R@1 / R@5 on the test split of exhaustive
   scoring vs two-stage for K in --ks, with the first stage on the vector the index stores (X-Pool with uniform
   attention; the mean of the prototypes) or on meanP of the raw frames, and the share of queries whose exhaustive
   top-1 survives the first stage. Ties: a candidate scoring equal to the positive does not rank above it;
   time-reversed twins have the same frames, so order-blind first stages tie them;
2. cost (random frame features, T frames x D dims, an untrained X-Pool head; each mode in its own subprocess so its
   peak RSS is its own): seconds per query and peak memory of exhaustive vs two-stage(K) for each gallery size.

    python benchmarks/xpool_two_stage.py [--seeds 0 1 2] [--epochs 60] [--sizes 1000 10000] [--k 100]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def two_stage_ranks(head, text: torch.Tensor, frames: torch.Tensor, k: int, candidates: torch.Tensor) -> np.ndarray:
    """0-based rank of each query's own video (query i <-> video i) under two-stage search with K candidates; a
    video outside the candidates is not in the result list at all (rank = a huge number)."""
    from xmr.heads.xpool import rerank

    scores, idx = rerank(head, text, frames, k=k, candidates=candidates)
    ranks = np.full(len(text), 10**9, dtype=np.int64)
    for i in range(len(text)):
        hit = (idx[i] == i).nonzero()
        if len(hit):
            pos = scores[i, hit[0, 0]]
            ranks[i] = int((scores[i] > pos).sum())  # ties with the positive count in its favour here only if equal
    return ranks


def quality(args) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).parent))
    from video_heads import WordGRU, tokenize  # the same data, towers and training as the head table

    from xmr.data import load_dataset
    from xmr.encoders.tiny import TinyConfig, TinyDualEncoder, TinyEncoder
    from xmr.video import frame_features
    from xmr.heads.train import train_head
    from xmr.synth.videos import generate_videos

    manifest = Path(args.out) / "captions.jsonl"
    if not manifest.is_file():
        generate_videos(args.out, n=args.n, seed=0)
    ds = load_dataset(f"manifest:{manifest}")
    enc = TinyEncoder(TinyDualEncoder(TinyConfig()))
    feats = frame_features(enc, ds.items, 8, size=None)
    caps = [it.captions[0] for it in ds.items]
    split = np.array([it.split for it in ds.items])
    vocab: dict[str, int] = {}
    ids = tokenize(caps, vocab)
    tr, te = np.where(split == "train")[0], np.where(split == "test")[0]
    rows = []
    for hname, seed in [(h, s) for h in args.heads for s in args.seeds]:
        tt = WordGRU(len(vocab) + 1, 64, seed)
        cfg = {"dim": 64, "max_frames": 8, "num_frames": 8, **({"heads": 4} if hname == "prototypes" else {})}
        head = train_head(feats[tr], ids[tr], [(i, i) for i in range(len(tr))], hname, cfg, epochs=args.epochs,
                          lr=2e-3, seed=seed, batch_size=32, text_tower=tt)
        with torch.no_grad():
            text = tt(ids[te])
            sims = head.similarity(text, feats[te]).numpy()
        pos = sims[np.arange(len(te)), np.arange(len(te))]
        ex_rank = (sims > pos[:, None]).sum(1)
        top1 = sims.argmax(1)
        row = {"head": hname, "seed": seed, "exhaustive": {"R@1": 100 * float((ex_rank < 1).mean()),
                                            "R@5": 100 * float((ex_rank < 5).mean())}}
        with torch.no_grad():
            vec = {"meanP": F.normalize(F.normalize(feats[te], dim=-1).mean(1), dim=-1),
                   ("uniform" if hname == "xpool" else "mean of prototypes"): head.candidate_embedding(feats[te])}
        for cname, v in vec.items():
            if v is None:
                continue
            cand = F.normalize(text, dim=-1) @ v.T
            cand_order = cand.argsort(dim=1, descending=True).numpy()
            r = (cand.numpy() > cand.numpy()[np.arange(len(te)), np.arange(len(te))][:, None]).sum(1)
            row[f"first stage {cname}"] = {"R@1": 100 * float((r < 1).mean()), "R@5": 100 * float((r < 5).mean())}
            for k in args.ks:
                r = two_stage_ranks(head, text, feats[te], k, cand)
                kept = np.mean([top1[i] in cand_order[i, :k] for i in range(len(te))])
                row[f"{cname} K={k}"] = {"R@1": 100 * float((r < 1).mean()), "R@5": 100 * float((r < 5).mean()),
                                         "top1_kept": 100 * float(kept)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def cost_worker(mode: str, n: int, t: int, d: int, k: int, queries: int) -> None:
    """One mode in a fresh process: prints {"s_per_query", "peak_rss_mb"}."""
    from xmr.heads import create_head
    from xmr.heads.xpool import rerank

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    frames = F.normalize(torch.randn(n, t, d, generator=g), dim=-1)
    text = F.normalize(torch.randn(queries, d, generator=g), dim=-1)
    head = create_head("xpool", dim=d, max_frames=t, num_frames=t).eval()
    mean = F.normalize(frames.mean(1), dim=-1)  # what the index stores per video
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with torch.no_grad():
        for q in range(queries):
            if mode == "exhaustive":
                head.similarity(text[q: q + 1], frames).topk(10)
            else:
                rerank(head, text[q: q + 1], frames, k=k, candidates=text[q: q + 1] @ mean.T)
    dt = (time.perf_counter() - t0) / queries
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"s_per_query": dt, "peak_rss_mb": peak, "data_rss_mb": base_rss}))


def cost(args) -> list[dict]:
    rows = []
    for n in args.sizes:
        row = {"videos": n, "frames": args.frames, "dim": args.dim, "K": args.k}
        for mode in ("two-stage", "exhaustive"):
            out = subprocess.run([sys.executable, __file__, "--worker", mode, str(n), str(args.frames), str(args.dim),
                                  str(args.k), str(args.queries)], capture_output=True, text=True, check=True)
            row[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        row["speedup"] = row["exhaustive"]["s_per_query"] / row["two-stage"]["s_per_query"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        mode, n, t, d, k, q = sys.argv[2], *map(int, sys.argv[3:8])
        return cost_worker(mode, n, t, d, k, q)
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600, help="synthetic clips (quality part)")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10, 20, 50])
    ap.add_argument("--heads", nargs="+", default=["xpool", "prototypes"], help="heads for the quality part")
    ap.add_argument("--out", default="/tmp/xmr_synth_bench")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=100, help="candidates re-scored (cost part)")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    q = [] if args.skip_quality else quality(args)
    c = cost(args)
    for h in args.heads if q else []:
        qh = [r for r in q if r["head"] == h]
        print(f"\n{h}: mean ± std over seeds {args.seeds}\n| mode | R@1 | R@5 | exhaustive top-1 in the candidates |"
              "\n| --- | --- | --- | --- |")
        ex = [r["exhaustive"] for r in qh]
        print(f"| exhaustive | {np.mean([e['R@1'] for e in ex]):.1f} ± {np.std([e['R@1'] for e in ex]):.1f} | "
              f"{np.mean([e['R@5'] for e in ex]):.1f} ± {np.std([e['R@5'] for e in ex]):.1f} | 100 |")
        for name in [key for key in qh[0] if key not in ("head", "seed", "exhaustive")]:
            v = [r[name] for r in qh]
            kept = f"{np.mean([e['top1_kept'] for e in v]):.1f}" if "top1_kept" in v[0] else "-"
            print(f"| {name} | {np.mean([e['R@1'] for e in v]):.1f} ± {np.std([e['R@1'] for e in v]):.1f} | "
                  f"{np.mean([e['R@5'] for e in v]):.1f} ± {np.std([e['R@5'] for e in v]):.1f} | {kept} |")
    print("\n| videos | exhaustive s/query | two-stage (K) s/query | speed-up | peak RSS exhaustive / two-stage MB |")
    print("| --- | --- | --- | --- | --- |")
    for r in c:
        print(f"| {r['videos']} | {r['exhaustive']['s_per_query']:.4f} | {r['two-stage']['s_per_query']:.4f} "
              f"(K={r['K']}) | {r['speedup']:.1f}x | {r['exhaustive']['peak_rss_mb']:.0f} / "
              f"{r['two-stage']['peak_rss_mb']:.0f} |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
