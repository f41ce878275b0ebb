"""Ask&Confirm and relevance feedback with a simulated user: R@1 / R@5 of the target after 0, 1, 2, 3 rounds,
against the partial query alone (round 0).

* ``synth``: the feature-level attribute world (:mod:`xmr.synth.attributes`; 4 attribute groups of 6/5/4/3 values).
  A linear text->image map is fitted (least squares) on 3000 training items; the gallery is 500 other items; the
  partial queries are the gallery's captions that leave out at least 2 of the 4 groups. A detail is one
  (group, value); appending it to a query adds its text-side vector to the caption's features (what a caption that
  mentions it holds). The user answers from the target's true values. 3 seeds = 3 worlds.
* ``coco``: coco-mini (real; 159 COCO images with captions, the gallery) with the default ``concept`` model. Partial
  query = the first half of a caption's words (at least 2); the details are the 80 COCO categories; the user answers
  from the target's COCO instance annotations. 795 queries (5 captions x 159 images). The info-gain policy is
  deterministic here; the random policy uses 3 seeds.

Each round of Ask&Confirm the system proposes one detail (``--policy info``: the greedy information-gain rule of
:mod:`xmr.retrieval.interactive.askconfirm`; ``random``: a random detail the query does not name, the baseline),
the user says yes or no, and the query is refined (``append``: the paper's fusion; with or without rejected details
as negative terms). Relevance feedback: each round the user sees the top 10 and marks good the results whose labels
overlap the target's by Jaccard >= 0.5 (the target itself always), bad those sharing no label; Rocchio
(alpha 1, beta 0.75, gamma 0.15) from the partial query with every mark so far.

    python benchmarks/ask_confirm.py --world synth
    python benchmarks/ask_confirm.py --world coco --data ../shared/data/coco-mini
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from xmr.retrieval.interactive import AskConfirmConfig, DetailBank, propose, rocchio

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco-mini"
ROUNDS = 3
LAST_YES: list[float] = []  # fraction of "yes" answers of each ask_confirm run since the last report


def _norm(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


def _ranks(G, Q, targets):
    s = Q @ G.T
    return 1 + (s > s[np.arange(len(targets)), targets][:, None]).sum(1)


def _recall(ranks):
    return {"R@1": float((ranks <= 1).mean() * 100), "R@5": float((ranks <= 5).mean() * 100)}


def ask_confirm(G, targets, qtexts, encode, bank, truth, cfg, policy, use_reject, seed):
    """Ranks (n, ROUNDS + 1). ``encode(conf_lists, rej_lists) -> (n, d)`` query vectors."""
    rng = np.random.default_rng(seed)
    n = len(targets)
    conf = [[] for _ in range(n)]
    rej = [[] for _ in range(n)]
    out = np.zeros((n, ROUNDS + 1), np.int64)
    answers = [0, 0]
    for r in range(ROUNDS + 1):
        Q = encode(conf, [x if use_reject else [] for x in rej])
        out[:, r] = _ranks(G, Q, targets)
        if r == ROUNDS:
            break
        S = Q @ G.T
        for i in range(n):
            asked = conf[i] + rej[i]
            if policy == "info":
                top = np.argsort(-S[i])[: cfg.candidates]
                p = propose(bank, G[top], S[i, top], cfg, exclude=asked, query_texts=[qtexts[i]])
                if not p:
                    continue
                d = p[0].detail
            else:
                from xmr.retrieval.interactive.askconfirm import mentioned

                pool = [t for t in bank.texts if t not in asked and not mentioned(t, [qtexts[i]])]
                if policy == "oracle":  # an upper bound: a detail the target shows, always
                    pool = [t for t in pool if truth(i, t)]
                if not pool:
                    continue
                d = pool[rng.integers(len(pool))]
            yes = truth(i, d)
            answers[0] += int(yes)
            answers[1] += 1
            (conf if yes else rej)[i].append(d)
    LAST_YES.append(answers[0] / max(answers[1], 1))
    return out


def feedback(G, targets, Q0, labels, shown=10):
    n = len(targets)
    good = [set() for _ in range(n)]
    bad = [set() for _ in range(n)]
    out = np.zeros((n, ROUNDS + 1), np.int64)
    Q = Q0.copy()
    lab = labels.astype(np.float64)
    inter = lab @ lab.T
    union = lab.sum(1)[:, None] + lab.sum(1)[None] - inter
    jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    for r in range(ROUNDS + 1):
        out[:, r] = _ranks(G, Q, targets)
        if r == ROUNDS:
            break
        S = Q @ G.T
        for i in range(n):
            t = targets[i]
            for j in np.argsort(-S[i])[:shown]:
                if j == t or jac[t, j] >= 0.5:
                    good[i].add(int(j))
                elif jac[t, j] == 0:
                    bad[i].add(int(j))
            Q[i] = rocchio(Q0[i], G[sorted(good[i])], G[sorted(bad[i])])
    return out


def _report(name, runs, yes=None):
    """runs: list of (n, ROUNDS + 1) rank arrays (one per seed) -> mean +- std per round; ``yes``: the fraction of
    "yes" answers of each run (default: those of the ask_confirm runs since the last report)."""
    yes = list(LAST_YES) if yes is None else yes
    LAST_YES.clear()
    rows = {}
    for r in range(ROUNDS + 1):
        vals = [_recall(x[:, r]) for x in runs]
        rows[r] = {k: (float(np.mean([v[k] for v in vals])), float(np.std([v[k] for v in vals]))) for k in vals[0]}
    extra = {"yes_answers": round(float(np.mean(yes)), 3)} if yes else {}
    print(json.dumps({"method": name, "seeds": len(runs), **extra,
                      "rounds": {r: {k: f"{m:.1f} +- {s:.1f}" for k, (m, s) in v.items()} for r, v in rows.items()}}))


# ---- synth -------------------------------------------------------------------------------------------------------
def synth(args):
    from xmr.synth.attributes import attribute_world

    groups = (6, 5, 4, 3)
    offsets = np.concatenate([[0], np.cumsum(groups)[:-1]])
    names = [f"g{g}v{v}" for g, k in enumerate(groups) for v in range(k)]
    results, yes_rates = {}, {}
    for seed in range(3):
        w = attribute_world(3500, groups=groups, captions_per_item=1, dim=32, noise=0.3, seed=seed)
        tr, te = np.arange(3000), np.arange(3000, 3500)
        # linear text -> image map on the training items (their captions: one each)
        X, Y = w.text_features[tr], w.image_features[w.text_to_item[tr]]
        W = np.linalg.solve(X.T @ X + 1e-2 * np.eye(X.shape[1]), X.T @ Y)
        G = _norm(w.image_features[te]).astype(np.float32)
        qi = np.array([i for i in te if w.ambiguity[i] >= 2])  # captions (one per item) leaving out >= 2 groups
        targets = qi - 3000
        base = w.text_features[qi]
        bank_vecs = _norm(w.text_vectors @ W).astype(np.float32)
        cfg = AskConfirmConfig(proposals=1)
        bank = DetailBank.build(names, bank_vecs, G, cfg)
        cls = w.values[qi] + offsets  # (n, G) true classes of each target
        idx = {t: j for j, t in enumerate(names)}
        truth = lambda i, d: idx[d] in cls[i]  # noqa: E731
        # captions "name" the groups they mention: those details are not asked about
        qtexts = [" ".join(names[c] for g, c in enumerate(cls[i]) if w.mentions[qi[i], g]) for i in range(len(qi))]

        def encode(conf, rej):
            T = base.copy()
            for i, c in enumerate(conf):
                for d in c:
                    T[i] += w.text_vectors[idx[d]]
            Q = _norm(T @ W)
            for i, rj in enumerate(rej):
                for d in rj:
                    Q[i] -= 0.5 * bank_vecs[idx[d]]
            return Q

        runs = {
            "ask&confirm info (append + rejected as negatives)": ask_confirm(G, targets, qtexts, encode, bank, truth,
                                                                            cfg, "info", True, seed),
            "ask&confirm info (append, confirmations only)": ask_confirm(G, targets, qtexts, encode, bank, truth, cfg,
                                                                        "info", False, seed),
            "ask&confirm random detail (append + negatives)": ask_confirm(G, targets, qtexts, encode, bank, truth,
                                                                         cfg, "random", True, seed),
            "oracle: a random true detail each round (append)": ask_confirm(G, targets, qtexts, encode, bank, truth,
                                                                           cfg, "oracle", True, seed),
            "relevance feedback (Rocchio)": feedback(G, targets, encode([[]] * len(qi), [[]] * len(qi)),
                                                     w.labels[te]),
        }
        for k, y in zip([k for k in runs if not k.startswith("relevance")], LAST_YES):  # in call order
            yes_rates.setdefault(k, []).append(y)
        LAST_YES.clear()
        for k, v in runs.items():
            results.setdefault(k, []).append(v)
    print(json.dumps({"world": "synth", "queries_per_seed": int(len(qi)), "gallery": 500}))
    for k, v in results.items():
        _report(k, v, yes_rates.get(k, []))


# ---- coco-mini ---------------------------------------------------------------------------------------------------
def coco(args):
    from xmr import create_encoder, load_dataset
    from xmr.data.labels import read_coco_instances
    from xmr.retrieval.interactive import COCO_CATEGORIES

    items, labels = [], []
    for split in ("train2017", "val2017"):
        ds = load_dataset(f"coco:{args.data}:{split}")
        inst = read_coco_instances(os.path.join(args.data, "annotations", f"instances_{split}.json"),
                                   image_root=os.path.join(args.data, split))
        row = {m: i for i, m in enumerate(inst.media)}
        assert tuple(inst.classes) == COCO_CATEGORIES, "COCO category names differ from the bundled list"
        items += list(ds.items)
        labels.append(inst.labels[[row[it.media] for it in ds.items]])
    labels = np.concatenate(labels)
    enc = create_encoder(args.model)
    t0 = time.perf_counter()
    cache = Path(args.cache) / f"coco_mini_{args.model.replace(':', '_').replace('/', '_')}.npy"
    if cache.is_file():
        G = np.load(cache)
    else:
        G = enc.encode_images([it.media for it in items], show_progress=False)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, G)
    G = np.asarray(G, np.float32)
    texts, targets = [], []
    for j, it in enumerate(items):
        for c in it.captions[:5]:
            w = c.strip().rstrip(".").split()
            texts.append(" ".join(w[: max(2, len(w) // 2)]))
            targets.append(j)
    targets = np.array(targets)
    cats = list(COCO_CATEGORIES)
    cidx = {c: k for k, c in enumerate(cats)}
    bank_vecs = enc.encode_text(cats, show_progress=False)
    cfg = AskConfirmConfig(proposals=1)
    bank = DetailBank.build(cats, bank_vecs, G, cfg)
    truth = lambda i, d: bool(labels[targets[i], cidx[d]])  # noqa: E731
    memo: dict[str, np.ndarray] = {}

    def encode_texts(ts):
        new = sorted({t for t in ts if t not in memo})
        if new:
            for t, v in zip(new, enc.encode_text(new, show_progress=False)):
                memo[t] = v
        return np.stack([memo[t] for t in ts]).astype(np.float64)

    def encode(conf, rej):
        Q = encode_texts([", ".join([texts[i], *c]) for i, c in enumerate(conf)])
        for i, rj in enumerate(rej):
            for d in rj:
                Q[i] -= 0.5 * bank_vecs[cidx[d]]
        return Q

    base = encode_texts(texts)

    def encode_terms(conf, rej):  # fuse="terms": mean-sim of the query and each confirmed detail (weight 1)
        Q = base.copy()
        for i, c in enumerate(conf):
            if c:
                Q[i] = (Q[i] + sum(bank_vecs[cidx[d]] for d in c)) / (1 + len(c))
        for i, rj in enumerate(rej):
            for d in rj:
                Q[i] -= 0.5 * bank_vecs[cidx[d]] / (1 + len(conf[i]))
        return Q

    print(json.dumps({"world": "coco-mini", "model": args.model, "queries": len(texts), "gallery": len(items),
                      "partial": "first half of the caption's words (>= 2)"}))
    _report("ask&confirm info (append + rejected as negatives)",
            [ask_confirm(G, targets, texts, encode, bank, truth, cfg, "info", True, 0)])
    _report("ask&confirm info (append, confirmations only)",
            [ask_confirm(G, targets, texts, encode, bank, truth, cfg, "info", False, 0)])
    _report("ask&confirm random detail (append + negatives)",
            [ask_confirm(G, targets, texts, encode, bank, truth, cfg, "random", True, s) for s in range(3)])
    _report("oracle: a random true detail each round (append)",
            [ask_confirm(G, targets, texts, encode, bank, truth, cfg, "oracle", True, s) for s in range(3)])
    _report("oracle: a random true detail each round (terms)",
            [ask_confirm(G, targets, texts, encode_terms, bank, truth, cfg, "oracle", True, s) for s in range(3)])
    sims = G @ np.asarray(bank_vecs, np.float32).T  # how well the model tells which image shows which category
    aucs = []
    for k in range(len(cats)):
        y = labels[:, k]
        if 0 < y.sum() < len(y):
            pos, neg = sims[y, k], sims[~y, k]
            aucs.append(float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()))
    print(json.dumps({"detail presence AUC (cos(image, category name) vs annotation), mean over categories":
                      round(float(np.mean(aucs)), 3), "categories": len(aucs)}))
    _report("ask&confirm info (terms + rejected as negatives)",
            [ask_confirm(G, targets, texts, encode_terms, bank, truth, cfg, "info", True, 0)])
    _report("ask&confirm info (terms, confirmations only)",
            [ask_confirm(G, targets, texts, encode_terms, bank, truth, cfg, "info", False, 0)])
    _report("ask&confirm random detail (terms + negatives)",
            [ask_confirm(G, targets, texts, encode_terms, bank, truth, cfg, "random", True, s) for s in range(3)])
    Q0 = _norm(encode([[] for _ in texts], [[] for _ in texts]))
    _report("relevance feedback (Rocchio)", [feedback(G, targets, Q0, labels)])
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", choices=("synth", "coco"), default="synth")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--model", default="concept")
    ap.add_argument("--cache", default=os.path.join(os.environ.get("XMR_CACHE", "/tmp"), "bench-features"))
    args = ap.parse_args()
    (synth if args.world == "synth" else coco)(args)


if __name__ == "__main__":
    main()
