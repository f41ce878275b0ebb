"""Expert fusion: do trained fusers (LAFF, MMT) beat the best single expert, plain concatenation and the experts
stage's fixed rules (vista / max / sum) when each caption is answered by a different expert?

World: :mod:`xmr.synth.expert_features` (per seed a new world): items with a visual vector and up to three experts
(``ocr``: one row, present for half the items, a junk row for 30 % of the others; ``sidecar``: one row, 60 %;
``subtitles``: 3 timed cues, one of which carries the content, 50 %); a shared text-side direction (modality gap)
inflates text-to-text cosines. Each caption describes one source the item has. Items are split: the first
``--train-items`` train the fusers (their captions), the rest are the test gallery, queried with their captions.

Methods: each single source (``visual``, ``ocr``, ``sidecar``, ``subtitles``: the best-row cosine, items without the
source last), the fixed rules of ``xmr search`` (``vista``, ``max``, ``sum``, all weights 1, the same formulas as
:mod:`xmr.retrieval.stages.experts`), and the trained fusers (``concat``, ``laff``, ``mmt``; :mod:`xmr.train.fusion`,
same epochs / batch / lr / hidden, seed = world seed). Also R@1 split by the source that answers each query.
Metrics: text -> item R@1/5/10 (percent) and MdR, pessimistic
ties (:mod:`xmr.eval.ranks`).

    OMP_NUM_THREADS=1 python benchmarks/fusion.py --seeds 0 1 2 --out benchmarks/results/fusion.json
    OMP_NUM_THREADS=1 python benchmarks/fusion.py --seeds 0 1 2 --real ../shared/data/flickr8k-dev --only-real

Real part (``--real``): flickr8k-dev photos embedded by the default ``concept`` model; each photo's first human
caption is its side text (one ``sidecar`` row), its captions 2-5 are the queries (the side-text caption is never a
query); ``--real-train`` photos train the fusers (their 4 queries each), the rest are the gallery; a new split per
seed.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from xmr.eval.ranks import metrics_from_ranks, ranks_t2i
from xmr.experts.fusers import pack_items, scores_numpy
from xmr.synth.expert_features import EXPERTS, ExpertWorldConfig, make_expert_world
from xmr.train.fusion import FusionTrainConfig, train_fuser

SINGLE = ("visual", *EXPERTS)
FIXED = ("vista", "max", "sum")
LEARNED = ("concat", "laff", "mmt")
KEYS = ("R@1", "R@5", "R@10", "MdR")


def fixed_scores(q: np.ndarray, visual: np.ndarray, rows: list[dict]) -> dict[str, np.ndarray]:
    """(Q, I) scores of each single source and each fixed rule of the experts stage."""
    nq, ni = len(q), len(visual)
    sv = q @ visual.T
    single = {"visual": sv}
    best_vec = {}
    for e in EXPERTS:
        s = np.full((nq, ni), -2.0, np.float32)  # items without the expert rank last
        vec = np.zeros((nq, ni, q.shape[1]), np.float32)
        for i, r in enumerate(rows):
            if e in r:
                m = np.stack([v for v, _ in r[e]])
                rs = q @ m.T
                j = rs.argmax(1)
                s[:, i], vec[:, i] = rs[np.arange(nq), j], m[j]
        single[e], best_vec[e] = s, vec
    has = {e: np.array([e in r for r in rows]) for e in EXPERTS}
    terms = sum(np.where(has[e][None], single[e], 0.0) for e in EXPERTS)
    agg = visual[None] + sum(best_vec[e] for e in EXPERTS)
    out = dict(single)
    out["vista"] = (sv + terms) / np.linalg.norm(agg, axis=-1)
    out["max"] = np.maximum(sv, np.max([np.where(has[e][None], single[e], -np.inf) for e in EXPERTS], 0))
    out["sum"] = sv + terms
    return out


def metrics(scores: np.ndarray, targets: np.ndarray) -> dict:
    m = metrics_from_ranks(ranks_t2i(scores, targets), ks=(1, 5, 10))
    return {k: round(float(m[k]), 2) for k in KEYS}


def run_seed(seed: int, args) -> dict:
    world = make_expert_world(ExpertWorldConfig(items=args.items, captions=args.captions, dim=args.dim), seed)
    ntr = args.train_items
    train_q = np.isin(world.targets, np.arange(ntr))
    test_q = ~train_q
    gallery = np.arange(ntr, args.items)
    tq, tt = world.queries[test_q], world.targets[test_q] - ntr
    res: dict = {}
    all_scores = fixed_scores(tq, world.visual[gallery], [world.rows[i] for i in gallery])
    for name, s in all_scores.items():
        res[name] = metrics(s, tt)
    tokens = pack_items(world.visual, world.rows, EXPERTS, args.max_rows)
    test_tokens = tokens.take(gallery)
    for name in LEARNED:
        t0 = time.time()
        cfg = FusionTrainConfig(fuser=name, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed,
                                fuser_config={"hidden": args.hidden, "max_rows": args.max_rows})
        fuser, hist = train_fuser(cfg, world.queries[train_q], world.targets[train_q], tokens, list(EXPERTS))
        all_scores[name] = scores_numpy(fuser, tq, test_tokens)
        res[name] = metrics(all_scores[name], tt)
        res[name]["train_s"] = round(time.time() - t0, 1)
        res[name]["last_loss"] = hist[-1]["loss"]
    # per answering source: R@1 of the best fixed rule, LAFF and MMT on the queries each source answers
    src = world.sources[test_q]
    res["by_source_R@1"] = {m: {SINGLE[k]: metrics(all_scores[m][src == k], tt[src == k])["R@1"]
                                for k in range(len(SINGLE)) if (src == k).any()} for m in (*FIXED, *LEARNED)}
    res["queries_by_source"] = {SINGLE[k]: int((src == k).sum()) for k in range(len(SINGLE))}
    return res


def real_features(root: str, cache: str | None):
    """flickr8k-dev: concept image embeddings, caption 1 of each photo as its side text (``sidecar`` row), captions
    2-5 as queries (never the side-text caption itself)."""
    import os

    from xmr.encoders import create_encoder
    from xmr.media import load_image

    if cache and os.path.exists(cache):
        z = np.load(cache)
        return z["visual"], z["side"], z["queries"], z["targets"]
    by: dict[str, list[str]] = {}
    for line in open(os.path.join(root, "captions.jsonl"), encoding="utf-8"):
        d = json.loads(line)
        by.setdefault(d["image"], []).append(d["caption"])
    names = sorted(n for n, c in by.items() if len(c) >= 5)
    enc = create_encoder("concept")
    visual = enc.encode_images([load_image(os.path.join(root, n)) for n in names])
    side = enc.encode_text([by[n][0] for n in names])
    queries = enc.encode_text([c for n in names for c in by[n][1:5]])
    targets = np.repeat(np.arange(len(names)), 4)
    if cache:
        np.savez(cache, visual=visual, side=side, queries=queries, targets=targets)
    return visual, side, queries, targets


def run_real(seed: int, feats, args) -> dict:
    """One split of the real photos: ``--real-train`` photos train the fusers, the rest are the gallery."""
    visual, side, queries, targets = feats
    order = np.random.default_rng(seed).permutation(len(visual))
    tr, te = order[: args.real_train], order[args.real_train :]
    pos = np.empty(len(visual), np.int64)
    pos[order] = np.arange(len(visual))
    rows = [{"sidecar": [(side[i], None)]} for i in order]
    tokens = pack_items(visual[order], rows, ["sidecar"], 1)
    qtr = np.isin(targets, tr)
    qte = ~qtr
    tt = pos[targets[qte]] - len(tr)
    res = {}
    sv = queries[qte] @ visual[te].T
    ss = queries[qte] @ side[te].T
    agg = visual[te] + side[te]
    res["visual"], res["sidecar"] = metrics(sv, tt), metrics(ss, tt)
    res["vista"] = metrics((sv + ss) / np.linalg.norm(agg, axis=1)[None], tt)
    res["max"], res["sum"] = metrics(np.maximum(sv, ss), tt), metrics(sv + ss, tt)
    for name in LEARNED:
        cfg = FusionTrainConfig(fuser=name, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed,
                                fuser_config={"hidden": args.real_hidden, "max_rows": 1})
        fuser, _ = train_fuser(cfg, queries[qtr], pos[targets[qtr]], tokens, ["sidecar"])
        res[name] = metrics(scores_numpy(fuser, queries[qte], tokens.take(np.arange(len(tr), len(visual)))), tt)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--train-items", type=int, default=700)
    ap.add_argument("--captions", type=int, default=3)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--max-rows", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--real", default=None, metavar="DIR", help="also flickr8k-dev photos (caption 1 as side text)")
    ap.add_argument("--real-train", type=int, default=350, help="real photos that train the fusers (default 350)")
    ap.add_argument("--real-hidden", type=int, default=256, help="fused width on the real photos (default 256)")
    ap.add_argument("--only-real", action="store_true", help="skip the synthetic world")
    ap.add_argument("--real-cache", default=None, metavar="NPZ", help="cache of the real photos' embeddings")
    args = ap.parse_args()
    if args.real:
        feats = real_features(args.real, args.real_cache)
        real = {s: run_real(s, feats, args) for s in args.seeds}
        rows = ("visual", "sidecar", "vista", "max", "sum", *LEARNED)
        print(f"## flickr8k-dev: {len(feats[0])} photos, {len(feats[0]) - args.real_train} in the test gallery, "
              f"queries = captions 2-5, side text = caption 1, model concept, seeds {args.seeds}\n")
        print("| method | " + " | ".join(KEYS) + " |\n| --- |" + " --- |" * len(KEYS))
        for m in rows:
            vals = [np.array([real[s][m][k] for s in args.seeds], float) for k in KEYS]
            print(f"| {m} | " + " | ".join(f"{v.mean():.1f} +- {v.std():.1f}" for v in vals) + " |", flush=True)
        if args.out:
            Path(args.out).with_suffix(".real.json").write_text(json.dumps(real, indent=1))
        if args.only_real:
            return
    runs = {}
    for seed in args.seeds:
        t0 = time.time()
        runs[seed] = run_seed(seed, args)
        print(f"seed {seed}: {time.time() - t0:.0f} s", flush=True)
    methods = [*SINGLE, *FIXED, *LEARNED]
    lines = [f"## Expert fusion (synthetic world, {args.items - args.train_items} test items, seeds {args.seeds})", "",
             "| method | " + " | ".join(KEYS) + " |", "| --- |" + " --- |" * len(KEYS)]
    summary = {}
    for m in methods:
        vals = {k: np.array([runs[s][m][k] for s in args.seeds], float) for k in KEYS}
        summary[m] = {k: (round(v.mean(), 2), round(v.std(), 2)) for k, v in vals.items()}
        lines.append(f"| {m} | " + " | ".join(f"{v.mean():.1f} +- {v.std():.1f}" for v in vals.values()) + " |")
    lines += ["", "R@1 by the source that answers the query (mean over seeds):", "",
              "| method | " + " | ".join(SINGLE) + " |", "| --- |" + " --- |" * len(SINGLE)]
    for m in (*FIXED, *LEARNED):
        per = [np.mean([runs[s]["by_source_R@1"][m].get(src, np.nan) for s in args.seeds]) for src in SINGLE]
        lines.append(f"| {m} | " + " | ".join(f"{v:.1f}" for v in per) + " |")
    print("\n".join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
