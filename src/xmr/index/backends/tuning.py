"""Training sample, held-out queries, exact ground truth and the search-parameter sweep of the approximate FAISS
backends (what autofaiss does, on FAISS's own ``ParameterSpace``; autofaiss itself pins numpy < 2, which xmr's
environment cannot take).

:func:`build_tuned` streams the source twice: pass 1 draws the training sample and up to ``heldout`` held-out
vectors; the index is trained; pass 2 adds every other vector and accumulates the held-out vectors' exact top-``k``
over them (``faiss.ResultHeap``, the ``knn_ground_truth`` pattern). The held-out vectors are not in the index while
it is tuned, so recall is measured on unseen queries; they are added afterwards. The sweep tries each value of the
speed/recall parameter (``efSearch``, ``nprobe``) from cheapest to dearest and keeps the first whose recall@k after
exact re-ranking of ``candidates(k)`` rows reaches the target; when recall stops improving below the target (the
compressed codes rank the true neighbours too low), it doubles the re-ranking depth up to 8 times, then sweeps the parameter again from the cheapest value with
that depth. A target that is
still not met is recorded as ``met_target: false`` with the recall reached (never hidden).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .base import exact_rerank


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found_i ∩ truth_i| / k (``truth`` (q, k), ``found`` (q, >=k) ids; -1 never counts)."""
    k = truth.shape[1]
    hits = [len(set(f[:k][f[:k] >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth)]
    return float(np.mean(hits)) / k if hits else 0.0


def heldout_count(n: int, heldout: int) -> int:
    """Held-out query vectors drawn from n rows: at most a tenth of them, none below 50 rows."""
    return min(heldout, n // 10) if n >= 50 else 0


def build_tuned(backend, source, *, train: Callable[[np.ndarray], None], grid: list, set_param: Callable,
                progress: Callable[[str], None] | None = None, train_size: int | None = None) -> None:
    """Train, fill and tune ``backend`` (an approximate FAISS backend) from ``source``; results go to ``backend.tuned``.
    ``train_size``: rows to sample for training (default: the config's ``train_size``)."""
    import faiss

    cfg = backend.config
    say = progress or (lambda m: None)
    n = int(source.count())
    rng = np.random.default_rng(cfg.seed)
    n_hold = heldout_count(n, cfg.heldout)
    hold = set(rng.choice(n, n_hold, replace=False).tolist()) if n_hold else set()
    p_train = min(1.0, (cfg.train_size if train_size is None else train_size) / max(1, n - n_hold))
    tx, hx, hid = [], [], []
    pos = 0
    for ids, vecs in source.iter_vectors(chunk=65536):  # pass 1: training sample + held-out queries
        m = len(ids)
        is_hold = np.fromiter((p in hold for p in range(pos, pos + m)), bool, m) if hold else np.zeros(m, bool)
        take = (rng.random(m) < p_train) & ~is_hold
        tx.append(vecs[take])
        hx.append(vecs[is_hold])
        hid.append(ids[is_hold])
        pos += m
    xt = np.ascontiguousarray(np.concatenate(tx) if tx else np.zeros((0, backend.dim), np.float32), np.float32)
    xq = np.ascontiguousarray(np.concatenate(hx) if hx else np.zeros((0, backend.dim), np.float32), np.float32)
    qid = np.concatenate(hid) if hid else np.zeros(0, np.int64)
    if backend.trains:
        say(f"training {backend.name} on {len(xt)} vectors")
    train(xt)
    k = min(cfg.tune_k, max(1, n - n_hold))
    heap = faiss.ResultHeap(len(xq), k, keep_max=True) if len(xq) else None
    added = 0
    for ids, vecs in source.iter_vectors(chunk=65536):  # pass 2: add + exact ground truth of the held-out queries
        keep = ~np.isin(ids, qid) if len(qid) else np.ones(len(ids), bool)
        ids_k, vecs_k = ids[keep], np.ascontiguousarray(vecs[keep], np.float32)
        backend.add(ids_k, vecs_k)
        if heap is not None and len(ids_k):
            kk = min(k, len(ids_k))
            d, i = faiss.knn(xq, vecs_k, kk, metric=faiss.METRIC_INNER_PRODUCT)
            heap.add_result(d, ids_k[i])
        added += len(ids_k)
        say(f"added {added}/{n - len(qid)} vectors")
    tuning = []
    chosen, recall = grid[-1], None
    if heap is not None:
        heap.finalize()
        truth = heap.I

        def measure(v) -> float:
            set_param(v)
            _, cand = backend.search(xq, backend.candidates(k))
            _, top = exact_rerank(xq, cand, source.vectors, k)
            r = recall_at(top, truth)
            tuning.append([v, backend.rerank_factor(), round(r, 4)])
            say(f"tuning {backend.param_name}={v}, rerank x{backend.rerank_factor()}: recall@{k} {r:.3f} "
                f"(target {cfg.target_recall})")
            return r

        best = -1.0
        flat_steps = 0
        for v in grid:  # cheapest first; stop at the target, or when recall stops improving (the codes limit it)
            r = measure(v)
            chosen, recall = v, r
            if r >= cfg.target_recall:
                break
            flat_steps = flat_steps + 1 if r < best + 0.002 else 0
            best = max(best, r)
            if flat_steps >= 2:
                break
        if recall < cfg.target_recall and not backend.exact_scores:
            # the candidates' approximate scores limit recall: re-rank a deeper list (2x, 4x, 8x)
            base = backend.rerank_factor()
            for mult in (2, 4, 8):
                backend.tuned["rerank_factor"] = base * mult
                recall = measure(chosen)
                if recall >= cfg.target_recall:
                    break
            if recall >= cfg.target_recall:  # with the deeper re-ranking a cheaper value may do: sweep again
                for v in grid[: grid.index(chosen)]:
                    r = measure(v)
                    if r >= cfg.target_recall:
                        chosen, recall = v, r
                        break
    set_param(chosen)
    rf = backend.rerank_factor()
    backend.tuned = {backend.param_name: chosen, "rerank_factor": rf, "factory": backend.factory,
                     "trained_on": int(len(xt)) if backend.trains else 0, "heldout_queries": int(len(xq)),
                     f"recall@{k}": None if recall is None else round(recall, 4),
                     "met_target": None if recall is None else bool(recall >= cfg.target_recall),
                     "tuning": tuning}
    if len(qid):
        backend.add(qid, xq)
