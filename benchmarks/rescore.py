"""QB-Norm speed, memory and exactness; the hubness case where it helps.

Three parts (each timing/memory measurement runs in its own subprocess, so peak RSS is clean):

1. ``dense``: a 60,000-query bank x 1,000 items (MSR-VTT 1k-A sized gallery), 1,000 test queries. xmr's
   :func:`xmr.rescore.qb_norm` (streaming :class:`QueryBank` from embeddings) against a straightforward dense
   implementation (materialise the bank matrix, ``exp``, sum, divide). The parent checks both give the same
   values (``output="prob"``) and identical rankings.
2. ``stream``: a bank too large for the dense path (default 300,000 x 10,000: 12 GB as float32, twice that with
   the ``exp`` copy) through the streaming path only; its bank embeddings are a memmap on disk.
3. ``hubness``: 1,000 test queries x 1,000 items and a 5,000-query bank whose scores share a per-item bias (a few
   "hub" items score high for every query). Text->item metrics before and after QB-Norm, DSL and CSLS.
4. ``real`` (only when asked for): a real dataset (``--data``, COCO layout) encoded once with ``--model``; the
   val split re-scored with the train split's captions as querybank. Each row equals
   ``xmr eval --dataset coco:DATA:val2017 --model M --rescore R --bank coco:DATA:train2017 ...``.

    python benchmarks/rescore.py                   # all three (the stream part takes a few minutes)
    python benchmarks/rescore.py --parts dense,hubness
    python benchmarks/rescore.py --stream-bank 1000000 --stream-items 10000
    python benchmarks/rescore.py --parts real --data ../shared/data/coco-mini --model concept
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 256


def unit_rows(rng, n, d=DIM, dtype=np.float32):
    x = rng.standard_normal((n, d)).astype(dtype)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_embeddings(bank: int, items: int, queries: int, seed: int = 0):
    """Items, test queries near their item, bank queries near random items (cosine ~0.3-0.6 for matches)."""
    rng = np.random.default_rng(seed)
    it = unit_rows(rng, items)
    tq = it[np.arange(queries) % items] + 0.9 * unit_rows(rng, queries)
    bq = it[rng.integers(items, size=bank)] + 0.9 * unit_rows(rng, bank)
    norm = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return norm(tq), norm(bq), it


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------- workers


def worker_dense(out: str, bank: int, items: int, queries: int, impl: str, beta: float) -> None:
    tq, bq, it = make_embeddings(bank, items, queries)
    base = peak_mb()
    t0 = time.perf_counter()
    test = tq @ it.T
    if impl == "naive":  # the formula written the obvious way: the whole bank matrix and its exp in memory
        bank_sims = bq.astype(np.float64) @ it.T.astype(np.float64)  # (B, G)
        active = np.unique(np.argmax(bank_sims, axis=1))
        z = np.exp(beta * bank_sims.astype(np.float64)).sum(axis=0)
        res = test.astype(np.float64).copy()
        rows = np.flatnonzero(np.isin(np.argmax(test, axis=1), active))
        res[rows] = np.exp(beta * test[rows].astype(np.float64)) / z
    else:
        from xmr.rescore import QueryBank, qb_norm

        dtype = np.float64 if impl == "xmr64" else np.float32
        res = qb_norm(test, QueryBank.from_embeddings(bq, it, dtype=dtype), beta=beta, output="prob")
    dt = time.perf_counter() - t0
    np.save(out, res)
    json.dump({"s": dt, "peak_mb": peak_mb(), "before_mb": base}, open(out + ".json", "w"))


def worker_stream(out: str, bank: int, items: int, queries: int, beta: float, tmp: str) -> None:
    from xmr.rescore import QueryBank, qb_norm

    rng = np.random.default_rng(1)
    it = unit_rows(rng, items)
    path = Path(tmp) / "bank.f32"
    mm = np.lib.format.open_memmap(str(path), mode="w+", dtype=np.float32, shape=(bank, DIM))
    for a in range(0, bank, 50_000):  # written in blocks: never the whole bank in RAM
        n = min(50_000, bank - a)
        x = it[rng.integers(items, size=n)] + 0.9 * unit_rows(rng, n)
        mm[a : a + n] = x / np.linalg.norm(x, axis=1, keepdims=True)
    mm.flush()
    del mm
    bq = np.load(str(path), mmap_mode="r")
    tq = unit_rows(rng, queries)
    base = peak_mb()
    t0 = time.perf_counter()
    qbank = QueryBank.from_embeddings(bq, it)
    res = qb_norm(tq @ it.T, qbank, beta=beta)
    dt = time.perf_counter() - t0
    json.dump({"s": dt, "peak_mb": peak_mb(), "before_mb": base, "chunk_rows": int((1 << 23) // items),
               "finite": bool(np.isfinite(res).all()), "dense_gb_float32": bank * items * 4 / 1e9},
              open(out + ".json", "w"))


# ------------------------------------------------------------------------------------------- parent


def run_worker(*args) -> dict:
    cmd = [sys.executable, __file__, "--worker", *map(str, args)]
    subprocess.run(cmd, check=True)
    return json.load(open(str(args[1]) + ".json"))


def part_dense(a, tmp) -> list[str]:
    lines = [f"### QB-Norm, {a.bank:,}-query bank x {a.items:,} items, {a.queries:,} test queries (beta {a.beta})", "",
             "| implementation | time (s) | peak RSS (MB) | RSS before (MB) | vs dense: max rel. diff | rows ranked "
             "identically | rows with identical top-10 |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    outs = {}
    labels = {"naive": "dense, straightforward (bank matrix float64)",
              "xmr": "xmr qb_norm, streaming QueryBank (float32 chunks)",
              "xmr64": "xmr qb_norm, streaming QueryBank (float64 chunks)"}
    for impl in ("naive", "xmr", "xmr64"):
        out = str(Path(tmp) / f"dense_{impl}.npy")
        r = run_worker("dense", out, a.bank, a.items, a.queries, impl, a.beta)
        x = outs[impl] = np.load(out)
        n = outs["naive"]
        rel = float(np.max(np.abs(x - n) / np.maximum(np.abs(n), 1e-300)))
        ox, on = np.argsort(-x, axis=1, kind="stable"), np.argsort(-n, axis=1, kind="stable")
        same = int((ox == on).all(axis=1).sum())
        top10 = int((ox[:, :10] == on[:, :10]).all(axis=1).sum())
        lines.append(f"| {labels[impl]} | {r['s']:.2f} | {r['peak_mb']:.0f} | {r['before_mb']:.0f} | {rel:.1e} "
                     f"| {same}/{len(x)} | {top10}/{len(x)} |")
    lines += ["", "Differences in the float32 row come only from float32 rounding of the bank matrix product "
              "(chunked vs one product); with float64 chunks the output matches the dense formula."]
    return lines


def part_stream(a, tmp) -> list[str]:
    out = str(Path(tmp) / "stream")
    r = run_worker("stream", out, a.stream_bank, a.stream_items, a.queries, a.beta, tmp)
    return [f"### Streaming bank: {a.stream_bank:,} queries x {a.stream_items:,} items (bank embeddings memmapped)", "",
            f"The dense bank matrix alone would be {r['dense_gb_float32']:.0f} GB (float32). xmr: "
            f"{r['s']:.1f} s, peak RSS {r['peak_mb']:.0f} MB (before: {r['before_mb']:.0f} MB), "
            f"{r['chunk_rows']} bank rows per chunk, output finite: {r['finite']}."]


def hubness_data(seed: int = 0, n: int = 1000, bank: int = 5000):
    """Sims = match signal + noise + per-item bias shared by test and bank queries (a few hub items)."""
    rng = np.random.default_rng(seed)
    bias = 0.1 * rng.standard_exponential(n)  # item "hubness": heavy-tailed
    test = 0.1 * rng.standard_normal((n, n)) + bias
    test[np.arange(n), np.arange(n)] += 0.35
    target = rng.integers(n, size=bank)
    bank_s = 0.1 * rng.standard_normal((bank, n)) + bias
    bank_s[np.arange(bank), target] += 0.35
    return test.astype(np.float32), bank_s.astype(np.float32), np.arange(n)


def part_hubness(a) -> list[str]:
    from xmr.eval import evaluate_sims
    from xmr.rescore import QueryBank, build_pipeline

    test, bank, t2i = hubness_data()
    qb = QueryBank.from_sims(bank, info={"source": "synthetic"})
    rows = [("none", test)]
    for label, names, params, b in [
        ("qbnorm (beta 20, k 1)", "qbnorm", {"qbnorm": {"beta": 20.0}}, qb),
        ("qbnorm inverted (beta 20)", "qbnorm", {"qbnorm": {"beta": 20.0, "mode": "inverted"}}, qb),
        ("dsl over the bank (T 0.05)", "dsl", {"dsl": {"temperature": 0.05}}, qb),
        ("dsl transductive (T 0.05)", "dsl", {"dsl": {"temperature": 0.05}}, None),
        ("csls, bank r_item (k 10)", "csls", {"csls": {"k": 10}}, qb),
    ]:
        rows.append((label, build_pipeline(names, params, b).dense(test, "t2i")))
    lines = ["### Hubness: 1,000 queries x 1,000 items, 5,000-query bank, shared per-item bias", "",
             "| re-scoring | t2i R@1 | R@5 | R@10 | MdR |", "| --- | ---: | ---: | ---: | ---: |"]
    for label, s in rows:
        m = evaluate_sims(s, t2i)["t2i"]
        lines.append(f"| {label} | {m['R@1']:.1f} | {m['R@5']:.1f} | {m['R@10']:.1f} | {m['MdR']:.0f} |")
    return lines


def part_real(a) -> list[str]:
    from xmr import create_encoder
    from xmr.data import load_dataset
    from xmr.eval import evaluate_sims
    from xmr.rescore import build_pipeline, querybank_from_source

    val = load_dataset(f"coco:{a.data}:val2017")
    enc = create_encoder(a.model)
    img, txt = enc.encode_images(val.media), enc.encode_text(val.texts)
    bank = querybank_from_source(f"coco:{a.data}:train2017", enc, img, test_texts=val.texts)
    sims = txt @ img.T
    lines = [f"### Real data: {a.model} on {val.name} ({len(val)} images, {val.num_texts} captions), querybank = "
             f"{bank.num_queries} train2017 captions", "",
             "| --rescore | options | t2i R@1 | R@5 | R@10 | i2t R@1 | R@5 | transductive in |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    rows = [("(none)", "", None, None, None)]
    for beta in (10.0, 20.0, 50.0):
        rows.append(("qbnorm", f"--beta {beta:g}", "qbnorm", {"qbnorm": {"beta": beta}}, bank))
    rows += [("qbnorm", "--beta 20 --qb-mode inverted", "qbnorm", {"qbnorm": {"beta": 20.0, "mode": "inverted"}}, bank),
             ("dsl", "--dsl-temperature 0.01", "dsl", {"dsl": {"temperature": 0.01}}, None),
             ("dsl", "--dsl-temperature 0.01 --bank", "dsl", {"dsl": {"temperature": 0.01}}, bank),
             ("csls", "--csls-k 10", "csls", {"csls": {"k": 10}}, None),
             ("csls", "--csls-k 10 --bank", "csls", {"csls": {"k": 10}}, bank)]
    for label, opts, names, params, b in rows:
        if names is None:
            t, i, trans = sims, sims, ""
        else:
            pipe = build_pipeline(names, params, b)
            t, i = pipe.dense(sims, "t2i"), pipe.dense(sims, "i2t")
            trans = ", ".join(d for r in pipe.records() for d in r["transductive_directions"])
        mt = evaluate_sims(t, val.text_to_item)["t2i"]
        mi = evaluate_sims(i, val.text_to_item)["i2t"]
        lines.append(f"| {label} | {opts} | {mt['R@1']:.1f} | {mt['R@5']:.1f} | {mt['R@10']:.1f} | {mi['R@1']:.1f} "
                     f"| {mi['R@5']:.1f} | {trans or '-'} |")
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        kind, out, *rest = sys.argv[2:]
        if kind == "dense":
            worker_dense(out, int(rest[0]), int(rest[1]), int(rest[2]), rest[3], float(rest[4]))
        else:
            worker_stream(out, int(rest[0]), int(rest[1]), int(rest[2]), float(rest[3]), rest[4])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="dense,stream,hubness")
    p.add_argument("--bank", type=int, default=60_000)
    p.add_argument("--items", type=int, default=1_000)
    p.add_argument("--queries", type=int, default=1_000)
    p.add_argument("--beta", type=float, default=20.0)
    p.add_argument("--stream-bank", type=int, default=300_000)
    p.add_argument("--stream-items", type=int, default=10_000)
    p.add_argument("--data", default="../shared/data/coco-mini", help="COCO-layout folder for --parts real")
    p.add_argument("--model", default="concept", help="encoder for --parts real")
    a = p.parse_args()
    parts = a.parts.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        out = []
        if "dense" in parts:
            out += part_dense(a, tmp) + [""]
        if "stream" in parts:
            out += part_stream(a, tmp) + [""]
        if "hubness" in parts:
            out += part_hubness(a) + [""]
        if "real" in parts:
            out += part_real(a) + [""]
    print("\n".join(out))


if __name__ == "__main__":
    main()
