"""Cost of the default model's QB-Norm warm-up (``xmr index`` computes the bundled bank's per-item statistics of
the new index generation; docs/concept.md "QB-Norm on by default"): seconds and peak memory of
:func:`xmr.retrieval.querybank.warm_model_querybank`, cold (fresh cache: bank embeddings from the shipped asset,
B x G scores streamed over item blocks) and warm (statistics loaded from the cache), and the first text search after
it.

    # a synthetic index of N concept-width vectors (imported through xmr index --from-embeddings --model concept)
    python benchmarks/querybank_warmup.py --synthetic 100000          # then --add 100 more: the incremental update
    # an existing concept index (e.g. xmr index ../shared/data/coco-mini/val2017 --index /tmp/coco-idx)
    python benchmarks/querybank_warmup.py --index /tmp/coco-idx

Synthetic vectors: non-negative, a few strong concepts per item plus noise, L2-normalised, float16 shards; the
timing does not depend on the values (every bank x item score is computed). Peak memory is tracemalloc's peak of
the warm-up call (numpy's buffers are traced), not the process RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path


def _import(emb: Path, index: str) -> dict:
    """`xmr index --from-embeddings EMB --model concept --json`: wall seconds and its querybank report."""
    import contextlib
    import io

    from xmr.cli import main as xmr

    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        xmr(["-q", "index", "--from-embeddings", str(emb), "--model", "concept", "--index", index, "--json"])
    return {"seconds": round(time.perf_counter() - t0, 1), "querybank": json.loads(buf.getvalue())["querybank"]}


def _synthetic(folder: Path, n: int, dim: int, seed: int = 0, shard: int = 25_000, start: int = 0) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    (folder / "img_emb").mkdir(parents=True)
    (folder / "metadata").mkdir()
    for s, a in enumerate(range(0, n, shard)):
        m = min(shard, n - a)
        v = np.abs(rng.normal(0, 0.02, size=(m, dim))).astype(np.float32)
        hot = rng.integers(0, dim, size=(m, 8))
        np.put_along_axis(v, hot, rng.uniform(0.2, 1.0, size=(m, 8)).astype(np.float32), axis=1)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        np.save(folder / "img_emb" / f"img_emb_{s}.npy", v.astype(np.float16))
        pd.DataFrame({"image_path": [f"synthetic/{start + a + i:07d}.jpg" for i in range(m)]}).to_parquet(
            folder / "metadata" / f"metadata_{s}.parquet")


def _warm(index: str) -> dict:
    from xmr.encoders import create_encoder
    from xmr.index.snapshot import open_reader
    from xmr.retrieval import Query, build_pipeline
    from xmr.retrieval.querybank import warm_model_querybank

    store, reader = open_reader(index)
    try:
        enc = create_encoder(reader.model_spec)
        out = {"items": reader.count(), "model": reader.model_spec}
        for label in ("cold", "cached"):
            tracemalloc.start()
            t0 = time.perf_counter()
            rep = warm_model_querybank(reader, enc)
            out[label] = {"seconds": round(time.perf_counter() - t0, 2), "computed": rep["computed"],
                          "embeddings": rep["embeddings"],
                          "peak_traced_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 1)}
            tracemalloc.stop()
        pipe = build_pipeline(enc)
        t0 = time.perf_counter()
        res = pipe.search(reader, Query.text("two dogs play in the snow"), k=10)
        out["first_search_s"] = round(time.perf_counter() - t0, 3)
        out["first_search_stages_s"] = {k: round(v, 3) for k, v in res.seconds.items()}
        t0 = time.perf_counter()
        pipe.search(reader, Query.text("a man rides a bike"), k=10)
        out["second_search_s"] = round(time.perf_counter() - t0, 3)
        # warm in-process latency (a server's), default against --rescore none, interleaved; the query's MiniLM pass
        # included (each text differs)
        import statistics

        from xmr.retrieval import SearchOptions

        plain = build_pipeline(enc, SearchOptions(rescore=()))
        lat: dict = {"default": [], "none": []}
        for i in range(20):
            for name, p in (("default", pipe), ("none", plain)):
                t0 = time.perf_counter()
                p.search(reader, Query.text(f"a photo of {i} people on a beach"), k=10)
                lat[name].append(time.perf_counter() - t0)
        out["warm_search_ms_median"] = {k: round(1000 * statistics.median(v), 1) for k, v in lat.items()}
    finally:
        store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", type=int, default=None, metavar="N", help="build an index of N synthetic vectors")
    ap.add_argument("--index", default=None, help="an existing index built with concept")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--add", type=int, default=100, help="then import this many more synthetic vectors (the "
                    "incremental update of the statistics; 0: skip)")
    args = ap.parse_args()
    if (args.synthetic is None) == (args.index is None):
        raise SystemExit("give --synthetic N or --index PATH")
    tmp = Path(tempfile.mkdtemp(prefix="xmr-qbwarm-"))
    real_cache = os.environ.get("XMR_CACHE")
    try:
        cache = tmp / "cache"  # fresh querybank statistics; the real cache's ONNX exports and class embeddings linked
        cache.mkdir()
        base = Path(real_cache or Path.home() / ".cache" / "xmr").expanduser()
        for sub in ("onnx", "concept"):
            if (base / sub).is_dir():
                (cache / sub).symlink_to(base / sub)
        os.environ["XMR_CACHE"] = str(cache)
        out: dict = {"cpus": os.cpu_count(), "omp_threads": os.environ.get("OMP_NUM_THREADS")}
        index = args.index
        if args.synthetic is not None:
            emb = tmp / "emb"
            t0 = time.perf_counter()
            _synthetic(emb, args.synthetic, 2384)
            out["synthesis_s"] = round(time.perf_counter() - t0, 1)
            index = str(tmp / "index")
            out["import_with_warmup"] = _import(emb, index)
            shutil.rmtree(cache / "querybank", ignore_errors=True)  # timed again below, alone
        out.update(_warm(index))
        if args.synthetic is not None and args.add:
            more = tmp / "more"
            _synthetic(more, args.add, 2384, seed=1, start=args.synthetic)
            out[f"add_{args.add}_with_warmup"] = _import(more, index)  # the next generation: incremental update
        out["load_avg"] = [round(x, 1) for x in os.getloadavg()]
    finally:
        if real_cache is None:
            os.environ.pop("XMR_CACHE", None)
        else:
            os.environ["XMR_CACHE"] = real_cache
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
