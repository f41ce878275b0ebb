"""Vector backends side by side on clustered synthetic vectors: build time, memory, disk, recall@10, queries/s.

    python benchmarks/backends.py                          # 1,000,000 x 512, 1,000 held-out queries, every backend
    python benchmarks/backends.py --n 50000 --backends flat hnsw ivfpq --milvus-n 0   # a quick look
    python benchmarks/backends.py --xmr-index 1000000       # + `xmr search` / serve latency and update visibility
                                                            #   on a real xmr index built with --from-embeddings

Data: ``--clusters`` Gaussian centres on the unit sphere with Zipf-distributed sizes (a few big clusters, many small
ones, like real embedding collections), each vector its centre plus isotropic noise of norm ~``--noise``, then
L2-normalised; queries are drawn the same way and are not in the database. Vectors are written in chunks to a
float32 memory-mapped file under ``--workdir`` (the database never has to fit in memory twice).

Per backend: build time (train + add + tune), index memory (the serialized index, what a process holds), disk
(the saved file), recall@10 against exact search of the same queries after the backend's exact re-ranking from the
stored vectors (as xmr searches), queries/s one query at a time and as one batch of all queries, and each number's
ratio to ``flat``. Milvus-lite is compared with FAISS on the same first ``--milvus-n`` vectors (insert rate,
single-query latency, recall@10). Peak RSS of the whole process is printed at the end. Prints a markdown table and
writes JSON with ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_data(path: Path, n: int, d: int, nq: int, clusters: int, noise: float, seed: int, chunk: int = 50_000):
    """(database memmap (n, d), queries (nq, d)) float32, L2-normalised (see the module docstring)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    p = 1.0 / np.arange(1, clusters + 1) ** 0.8
    p /= p.sum()

    def draw(m):
        c = rng.choice(clusters, size=m, p=p)
        x = centres[c] + rng.normal(scale=noise / np.sqrt(d), size=(m, d)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    db = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, chunk):
        db[s : s + chunk] = draw(min(chunk, n - s))
    db.flush()
    return np.load(path, mmap_mode="r"), draw(nq)


def recall10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth)]))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def index_bytes(folder: Path) -> int:
    """What a process holds for the index: the size of its saved FAISS file (FAISS writes its in-memory arrays as
    they are; serializing a 2 GB flat index to measure it would double the memory of the run)."""
    return sum(f.stat().st_size for f in folder.iterdir() if f.suffix in (".faiss", ".bfaiss", ".npy"))


def searcher(backend, fetch):
    """The search xmr runs: the backend's candidates, re-scored exactly from the stored vectors (approximate)."""
    from xmr.index.backends import exact_rerank

    def run(q, k=10):
        if backend.exact:
            return backend.search(q, k)
        _, cand = backend.search(q, backend.candidates(k))
        return exact_rerank(q, cand, fetch, k)

    return run


def time_queries(run, xq, n_single: int) -> tuple[float, float, np.ndarray]:
    """(queries/s one at a time over the first n_single, queries/s as one batch, ids of the batch)."""
    t = time.perf_counter()
    for i in range(n_single):
        run(xq[i : i + 1])
    single = n_single / (time.perf_counter() - t)
    t = time.perf_counter()
    _, ids = run(xq)
    batch = len(xq) / (time.perf_counter() - t)
    return single, batch, ids


def bench_faiss(names, db, xq, work: Path, n_single: int, log):
    from xmr.index.backends import create_backend
    from xmr.index.backends.base import ArraySource

    n, d = db.shape
    ids = np.arange(1, n + 1, dtype=np.int64)
    src = ArraySource(ids, db)
    rows, truth = [], None
    for name in names:
        log(f"[{name}] building over {n} x {d}")
        b = create_backend({"name": name, "config": {}}, d)
        t = time.perf_counter()
        b.build(src, progress=lambda m, name=name: log(f"  [{name}] {m}") if "added" not in m or m.endswith("0 vectors") else None)
        build_s = time.perf_counter() - t
        folder = work / f"idx-{name}"
        folder.mkdir(exist_ok=True)
        b.save(folder, "vectors")
        disk = sum(f.stat().st_size for f in folder.iterdir())
        mem = index_bytes(folder)
        run = searcher(b, src.vectors)
        single, batch, found = time_queries(run, xq, n_single)
        if name == "flat":
            truth = found
        rec = recall10(found, truth) if truth is not None else None
        row = {"backend": name, "n": n, "build_s": round(build_s, 1), "index_mb": round(mem / 1e6, 1),
               "disk_mb": round(disk / 1e6, 1), "recall@10": None if rec is None else round(rec, 4),
               "qps_single": round(single, 1), "qps_batch": round(batch, 1),
               "load": [round(v, 1) for v in os.getloadavg()], "params": b.describe()}
        log(f"[{name}] {json.dumps({k: v for k, v in row.items() if k != 'params'})}")
        log(f"[{name}] tuned: {json.dumps({k: v for k, v in b.tuned.items() if k != 'tuning'})}")
        rows.append(row)
        shutil.rmtree(folder)
        del b, run
    flat = next((r for r in rows if r["backend"] == "flat"), None)
    if flat:
        for r in rows:
            r["x_single"] = round(r["qps_single"] / flat["qps_single"], 2)
            r["x_batch"] = round(r["qps_batch"] / flat["qps_batch"], 2)
            r["mem_ratio"] = round(r["index_mb"] / flat["index_mb"], 4)
    return rows, truth


def bench_milvus(db, xq, n_m: int, work: Path, n_single: int, log):
    """Milvus-lite against FAISS (flat, hnsw) on the same first ``n_m`` vectors."""
    from xmr.index.backends import create_backend
    from xmr.index.backends.base import ArraySource

    sub = np.ascontiguousarray(db[:n_m])
    ids = np.arange(1, n_m + 1, dtype=np.int64)
    src = ArraySource(ids, sub)
    flat = create_backend(None, sub.shape[1])
    flat.build(src)
    _, truth = flat.search(xq, 10)
    out = []
    for name in ("flat", "hnsw", "milvus"):
        b = flat if name == "flat" else create_backend({"name": name, "config": {}}, sub.shape[1])
        folder = work / f"milvus-cmp-{name}"
        folder.mkdir(exist_ok=True)
        if name == "milvus":
            b.attach(folder, "vectors")
        t = time.perf_counter()
        if name != "flat":
            b.build(src)
        if name == "milvus":
            b.client().flush(b._collection)
        ins = time.perf_counter() - t if name != "flat" else None
        run = searcher(b, src.vectors)
        lat = []
        for i in range(n_single):
            t = time.perf_counter()
            run(xq[i : i + 1])
            lat.append(time.perf_counter() - t)
        _, found = run(xq)
        row = {"engine": name, "n": n_m, "insert_rows_per_s": None if ins is None else round(n_m / ins),
               "build_s": None if ins is None else round(ins, 1),
               "latency_ms_p50": round(1e3 * statistics.median(lat), 2), "recall@10": round(recall10(found, truth), 4)}
        log(f"[milvus-cmp] {json.dumps(row)}")
        out.append(row)
        b.release()
        shutil.rmtree(folder, ignore_errors=True)
    return out


def bench_xmr_index(db, xq, n_x: int, work: Path, log, backend: str = "flat"):
    """``xmr search`` (a fresh process) and ``xmr serve``'s live index on a real xmr index of ``n_x`` vectors, and how
    long an update of 1,000 rows takes to become visible to the live index."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb = work / "emb"
    (emb / "img_emb").mkdir(parents=True, exist_ok=True)
    (emb / "metadata").mkdir(exist_ok=True)
    shard = 250_000
    for s_i, s in enumerate(range(0, n_x, shard)):
        e = min(n_x, s + shard)
        np.save(emb / "img_emb" / f"img_emb_{s_i}.npy", np.asarray(db[s:e]))
        pq.write_table(pa.table({"image_path": [f"/data/img/{i:07d}.jpg" for i in range(s, e)]}),
                       emb / "metadata" / f"metadata_{s_i}.parquet")
    idx = work / "xmr-index"
    xmr = [str(Path(sys.executable).parent / "xmr")]
    t = time.perf_counter()
    subprocess.run(xmr + ["index", "--from-embeddings", str(emb), "--index", str(idx), "--backend", backend],
                   check=True)
    import_s = time.perf_counter() - t
    log(f"[xmr] --from-embeddings {n_x} rows, backend {backend}: {import_s:.1f} s")
    q = work / "q.npy"
    np.save(q, xq[0])
    lat = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(xmr + ["search", "--vector", str(q), "--index", str(idx), "--k", "10", "--json"],
                           check=True, capture_output=True, text=True)
        lat.append(time.perf_counter() - t)
    log(f"[xmr] xmr search --vector (whole process): {[round(x, 2) for x in lat]} s")
    from xmr.index.store import IndexStore, NewItem
    from xmr.retrieval import search_vector
    from xmr.serve.live import LiveIndex

    t = time.perf_counter()
    live = LiveIndex(idx)
    open_s = time.perf_counter() - t
    reader = live.reader()
    qs = []
    for i in range(20):
        t = time.perf_counter()
        search_vector(reader, xq[i], k=10)
        qs.append(time.perf_counter() - t)
    log(f"[xmr] live index open {open_s:.2f} s; search p50 {1e3 * statistics.median(qs):.1f} ms")
    with IndexStore(idx) as st:
        rng = np.random.default_rng(1)
        new = [NewItem(f"/data/new/{i}.jpg", "/data/new", 1, 0.0, "0" * 64, "image", None, None,
                       (v / np.linalg.norm(v)).astype(np.float32)) for i, v in
               enumerate(rng.normal(size=(1000, db.shape[1])).astype(np.float32))]
        t0 = time.perf_counter()
        st.add_batch(new)
        commit_s = time.perf_counter() - t0
    t = time.perf_counter()
    snap = live.snapshot()
    visible_s = time.perf_counter() - t
    ok = snap.count == n_x + 1000
    log(f"[xmr] update of 1000 rows: commit {commit_s:.2f} s, visible to the live index after {visible_s:.2f} s "
        f"more (count ok: {ok})")
    return {"n": n_x, "backend": backend, "import_s": round(import_s, 1), "xmr_search_process_s": [round(x, 2) for x in lat],
            "live_open_s": round(open_s, 2), "live_search_ms_p50": round(1e3 * statistics.median(qs), 1),
            "update_commit_s": round(commit_s, 2), "update_visible_s": round(visible_s, 2), "update_ok": ok}


def tuning_check(n: int, d: int, nq: int, clusters: int, noise: float, work: Path, log, seeds=(0, 1, 2),
                 names=("hnsw", "ivfpq")):
    """Does the recall measured on held-out vectors while tuning hold on fresh queries? For each seed (new data):
    build hnsw and ivfpq with their default targets, then measure recall@10 of 1,000 new queries against exact
    search. Returns mean and std over the seeds of both numbers."""
    from xmr.index.backends import create_backend
    from xmr.index.backends.base import ArraySource

    out = {}
    for name in names:
        tuned, fresh = [], []
        for seed in seeds:
            db, xq = make_data(work / f"tune-{seed}.npy", n, d, nq, clusters, noise, 100 + seed)
            db = np.ascontiguousarray(db)
            ids = np.arange(n, dtype=np.int64)
            src = ArraySource(ids, db)
            b = create_backend({"name": name, "config": {"seed": seed}}, d)
            b.build(src)
            truth = np.argsort(-(xq @ db.T), axis=1)[:, :10]
            _, found = searcher(b, src.vectors)(xq)
            tuned.append(b.tuned["recall@10"])
            fresh.append(recall10(found, truth))
            log(f"[tuning-check] {name} seed {seed}: target {b.config.target_recall}, held-out {tuned[-1]:.4f}, "
                f"fresh queries {fresh[-1]:.4f} ({b.tuned.get(b.param_name)=}, rerank x{b.rerank_factor()})")
        out[name] = {"target": b.config.target_recall, "heldout_mean": float(np.mean(tuned)),
                     "heldout_std": float(np.std(tuned)), "fresh_mean": float(np.mean(fresh)),
                     "fresh_std": float(np.std(fresh)), "held": bool(min(fresh) >= b.config.target_recall)}
        log(f"[tuning-check] {name}: {json.dumps(out[name])}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--noise", type=float, default=0.8, help="noise norm around a cluster centre (unit centres)")
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time")
    ap.add_argument("--backends", nargs="*", default=["flat", "hnsw", "ivf", "ivfpq", "binary"], help="(none: skip)")
    ap.add_argument("--milvus-n", type=int, default=200_000, help="vectors for milvus-lite vs FAISS (0: skip)")
    ap.add_argument("--xmr-index", type=int, default=0, help="rows of the xmr index for search/serve latency (0: skip)")
    ap.add_argument("--tuning-check", type=int, default=0, metavar="N",
                    help="also: 3 seeds of N vectors: held-out recall while tuning vs recall on fresh queries")
    ap.add_argument("--tuning-backends", nargs="+", default=["hnsw", "ivfpq"])
    ap.add_argument("--xmr-backend", default="flat", help="backend of that index (default flat)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="FAISS OpenMP threads (default 1: on a shared, loaded machine more threads spin-wait)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    import faiss

    faiss.omp_set_num_threads(a.threads)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="xmr-bench-backends-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def log(m):
        print(f"{time.perf_counter() - t0:7.1f}s {m}", flush=True)

    log(f"load average {os.getloadavg()}; {os.cpu_count()} cpus; generating {a.n} x {a.dim}")
    db, xq = make_data(work / "db.npy", a.n, a.dim, a.queries, a.clusters, a.noise, a.seed)
    res = {"args": vars(a), "load_start": os.getloadavg()}
    if a.tuning_check:
        res["tuning_check"] = tuning_check(a.tuning_check, a.dim, a.queries, a.clusters, a.noise, work, log,
                                           names=a.tuning_backends)
    if a.backends:
        res["backends"], _ = bench_faiss(a.backends, db, xq, work, a.single, log)
    if a.milvus_n:
        res["milvus"] = bench_milvus(db, xq, min(a.milvus_n, a.n), work, a.single, log)
    if a.xmr_index:
        res["xmr"] = bench_xmr_index(db, xq, min(a.xmr_index, a.n), work, log, a.xmr_backend)
    res["load_end"] = os.getloadavg()
    res["peak_rss_gb"] = round(peak_rss_gb(), 2)
    if res.get("backends"):
        print("\n| backend | build s | index MB | disk MB | recall@10 | q/s single | q/s batch | x flat single | "
              "x flat batch | memory vs flat |\n|---|---|---|---|---|---|---|---|---|---|")
        for r in res["backends"]:
            print(f"| {r['backend']} | {r['build_s']} | {r['index_mb']} | {r['disk_mb']} | {r['recall@10']} | "
                  f"{r['qps_single']} | {r['qps_batch']} | {r.get('x_single')} | {r.get('x_batch')} | "
                  f"{r.get('mem_ratio')} |")
    print(f"\npeak RSS {res['peak_rss_gb']} GB; load average start {res['load_start']}, end {res['load_end']}")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1, default=str))
    if a.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
