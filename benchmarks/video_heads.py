"""Temporal video heads on a synthetic set: mean vs seqtransf vs xpool vs ts2net vs prototypes.

What is frozen / trained:
  * frozen: the `tiny` image tower at its random initialisation (TinyConfig(), seed 0). Frames (8 per clip,
    64x64 -> 32x32) are encoded once into class-token embeddings (N, 8, 64) (L2-normalised) and patch tokens
    (N, 8, 17, 64) for ts2net;
  * `mean+proj` is `mean` with MeanConfig(proj=True): order-blind, but with a trainable per-frame linear map;
  * trained from scratch, per run: the head and a small word-level text tower (word + position embeddings,
    1-layer bidirectional GRU, linear to 64; identical architecture and seed for every head), jointly with
    symmetric InfoNCE (xmr.heads.train.train_head with text_tower=...).

Metrics on the test split (gallery = all test clips; every test caption is a query):
  * text->video R@1 / R@5, pessimistic ties (a tie with the positive counts as ranked above it);
  * twin accuracy for order (b) and motion (c) captions: share of queries whose own clip scores strictly higher
    than its time-reversed twin (an exact tie counts 1/2): an order-blind head is at 50 %.

    python benchmarks/video_heads.py [--n 600] [--epochs 60] [--seeds 0 1 2] [--out /tmp/xmr_synth_bench]
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xmr.data import load_dataset
from xmr.encoders.tiny import TinyConfig, TinyDualEncoder, TinyEncoder
from xmr.video import frame_features, frame_tokens
from xmr.heads.train import train_head
from xmr.synth.videos import generate_videos

HEADS = ("mean", "mean+proj", "seqtransf", "xpool", "ts2net", "prototypes")
#: variants run only when named with --heads: ts2net with TS2-Net's perturbed top-k selection
VARIANTS = ("ts2net+perturbed",)
TYPES = {"a": "transient (a)", "b": "order (b)", "c": "motion (c)"}


def caption_type(c: str) -> str:
    return "b" if ", then " in c else "c" if " moves " in c else "a"


class WordGRU(nn.Module):
    """Word ids (B, L) -> (B, dim): word + position embeddings, bidirectional GRU, linear."""

    def __init__(self, vocab: int, dim: int = 64, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1000 + seed)
            self.emb = nn.Embedding(vocab, dim, padding_idx=0)
            self.gru = nn.GRU(dim, dim, batch_first=True, bidirectional=True)
            self.out = nn.Linear(2 * dim, dim)

    def forward(self, ids):
        _, h = self.gru(self.emb(ids))  # h: (2, B, dim)
        return self.out(torch.cat([h[0], h[1]], dim=-1))


def tokenize(captions, vocab):
    words = [re.findall(r"[a-z]+", c.lower()) for c in captions]
    for ws in words:
        for w in ws:
            vocab.setdefault(w, len(vocab) + 1)
    L = max(len(ws) for ws in words)
    ids = torch.zeros(len(words), L, dtype=torch.long)
    for i, ws in enumerate(words):
        ids[i, : len(ws)] = torch.tensor([vocab[w] for w in ws])
    return ids


def evaluate(sims: np.ndarray, text_to_video: np.ndarray, twin: np.ndarray) -> dict:
    pos = sims[np.arange(len(sims)), text_to_video]
    rank = (sims >= pos[:, None]).sum(1) - 1  # 0 = first; pessimistic ties
    tw = np.full(len(sims), np.nan)
    has = twin >= 0
    tws = sims[np.arange(len(sims))[has], twin[has]]
    tw[has] = (pos[has] > tws) + 0.5 * (pos[has] == tws)
    return {"r1": rank < 1, "r5": rank < 5, "twin": tw}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--heads", nargs="+", default=list(HEADS))
    ap.add_argument("--out", default="/tmp/xmr_synth_bench")
    ap.add_argument("--json", default=None, help="also write the per-run numbers here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()

    manifest = Path(args.out) / "captions.jsonl"
    if not manifest.is_file():
        generate_videos(args.out, n=args.n, seed=0)
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    ds = load_dataset(f"manifest:{manifest}")
    enc = TinyEncoder(TinyDualEncoder(TinyConfig()))
    feats = frame_features(enc, ds.items, 8, size=None)  # (N, 8, 64)
    toks = frame_tokens(enc, ds.items, 8, size=None)  # (N, 8, 17, 64)
    t_feat = time.perf_counter() - t0

    caps = [it.captions[0] for it in ds.items]
    split = np.array([it.split for it in ds.items])
    vocab: dict[str, int] = {}
    ids = tokenize(caps, vocab)
    # twin = the time-reversed partner (same frames, opposite caption); -1 for kind a
    twin = np.full(len(caps), -1)
    for i in range(len(caps) - 1):  # twins are consecutive: the generator writes a clip then its reversal
        if rows[i]["type"] in "bc" and rows[i + 1]["type"] == rows[i]["type"] and twin[i] < 0:
            a = feats[i].numpy()
            b = feats[i + 1].numpy()[::-1]
            if np.allclose(a, b, atol=5e-2):
                twin[i], twin[i + 1] = i + 1, i
    tr, te = np.where(split == "train")[0], np.where(split == "test")[0]
    te_pos = {v: k for k, v in enumerate(te)}
    te_twin = np.array([te_pos.get(twin[i], -1) if twin[i] >= 0 else -1 for i in te])
    types = np.array([caption_type(caps[i]) for i in te])
    print(f"{len(tr)} train / {len(te)} test clips, {int((te_twin >= 0).sum())} test clips with a twin; "
          f"features in {t_feat:.1f} s")

    results: dict[str, list[dict]] = {h: [] for h in args.heads}
    for h in args.heads:
        for seed in args.seeds:
            tt = WordGRU(len(vocab) + 1, 64, seed)
            x = toks if h.startswith("ts2net") else feats
            cfg = {"dim": 64, "max_frames": 8, "num_frames": 8}
            name = h
            if h == "mean+proj":  # order-blind control with a trainable video side
                name, cfg["proj"] = "mean", True
            if h == "ts2net+perturbed":
                name, cfg["selection"] = "ts2net", "perturbed"
            if name in ("seqtransf", "ts2net", "prototypes"):
                cfg["heads"] = 4
            s0 = time.perf_counter()
            head = train_head(x[tr], ids[tr], [(i, i) for i in range(len(tr))], name, cfg, epochs=args.epochs,
                              lr=args.lr, seed=seed, batch_size=32, text_tower=tt)
            with torch.no_grad():
                sims = head.similarity(tt(ids[te]), x[te]).numpy()
            ev = evaluate(sims, np.arange(len(te)), te_twin)
            ev["time"] = time.perf_counter() - s0
            results[h].append(ev)
            print(f"  {h:10s} seed {seed}: R@1 {ev['r1'].mean():.2f} R@5 {ev['r5'].mean():.2f} "
                  f"twin {np.nanmean(ev['twin']):.2f} ({ev['time']:.1f} s)", flush=True)

    def cell(h, key, mask):
        vals = [100 * np.nanmean(r[key][mask]) for r in results[h]]
        return f"{np.mean(vals):5.1f} ± {np.std(vals):4.1f}"

    print(f"\ntext->video on {len(te)} test clips, {len(args.seeds)} seeds (mean ± std over seeds), "
          f"{args.epochs} epochs; total {time.perf_counter() - t0:.0f} s\n")
    hdr = "| head | all R@1 | all R@5 | " + " | ".join(f"{TYPES[t]} R@1 | {TYPES[t]} R@5" for t in "abc")
    hdr += " | order twin acc | motion twin acc |"
    print(hdr)
    print("|" + " --- |" * (hdr.count("|") - 1))
    for h in args.heads:
        allm = np.ones(len(te), bool)
        cells = [cell(h, "r1", allm), cell(h, "r5", allm)]
        for t in "abc":
            cells += [cell(h, "r1", types == t), cell(h, "r5", types == t)]
        cells += [cell(h, "twin", (types == "b") & (te_twin >= 0)), cell(h, "twin", (types == "c") & (te_twin >= 0))]
        print(f"| {h} | " + " | ".join(cells) + " |")
    print("\nqueries per type: " + ", ".join(f"{t}: {int((types == t).sum())}" for t in "abc"))
    if args.json:
        Path(args.json).write_text(json.dumps({h: [{k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                                    for k, v in r.items()} for r in rs] for h, rs in results.items()}))


if __name__ == "__main__":
    main()
