"""MLA language acquirers (docs/multilingual.md): German / French / Czech queries against the English tower's space.

    python benchmarks/multilingual.py --data ../shared/data/multi30k --images ../shared/data/flickr8k-dev/images \
        [--seeds de=runs/de-s0,runs/de-s1,runs/de-s2] [--out results.json]

A. Cross-lingual caption retrieval, Multi30K test_2016_flickr (969 lines; query in L, gallery = the 969 English
   captions, the match is the query's translation; R@1/5/10 by xmr.eval.evaluate_sims), three ways:
   * floor: the untouched English tower fed the foreign text (``concept+lang:none``);
   * student: the bundled acquirer (``concept``, lang given; and lang detected per query, as ``xmr search`` does);
   * ceiling: the English query itself, i.e. the translation's own vector: R@1 = 100 by construction in this
     protocol, so "share of the ceiling" is (student - floor) / (100 - floor), the share of the gap closed.
   Both in the space the acquirer is trained in (MiniLM sentence embeddings, 384-d) and in the default model's query
   space (concept, 2000-d: what an index is searched with).
B. "Returns what its English translation returns": the same test lines as queries over an English-indexed image
   collection (``--images``, encoded by ``concept``; an xmr index's default flat backend ranks by the same exact
   inner product): share of queries whose top-1 image equals the English translation's top-1, and mean overlap of
   the top-5 sets; floor vs student (the ceiling is 100% by definition).
C. Seeds (``--seeds L=DIR,DIR,DIR``): part A's student R@1/5/10 (MiniLM space) per training run, mean +- std, with
   each run's trained / frozen parameters and training seconds (from its training.json).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def recall(q: np.ndarray, g: np.ndarray) -> dict:
    from xmr.eval import evaluate_sims

    m = evaluate_sims(q @ g.T, np.arange(len(q)), "standard")["t2i"]
    return {k: round(m[k], 2) for k in ("R@1", "R@5", "R@10")}


def gap_share(student: float, floor: float, ceiling: float = 100.0) -> float:
    return round(100.0 * (student - floor) / (ceiling - floor), 1) if ceiling > floor else float("nan")


def agreement(q: np.ndarray, ref: np.ndarray, images: np.ndarray, k: int = 5) -> dict:
    sq, sr = q @ images.T, ref @ images.T
    tq, tr = np.argsort(-sq, 1)[:, :k], np.argsort(-sr, 1)[:, :k]
    top1 = float((tq[:, 0] == tr[:, 0]).mean() * 100)
    overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(tq, tr)]) * 100)
    return {"same_top1_%": round(top1, 1), f"top{k}_overlap_%": round(overlap, 1)}


def run_info(d: Path) -> dict:
    """Seed, steps and training seconds of a run folder or one of its checkpoints/epoch-NNNN folders (state.json),
    and the acquirer's parameter count."""
    from xmr.encoders.lang.acquirer import count_parameters, load_acquirer

    st = d / "state.json" if (d / "state.json").is_file() else max((d / "checkpoints").glob("epoch-*/state.json"))
    meta = json.loads(st.read_text())
    hist = [h for h in meta["history"] if h["epoch"] > 0]
    return {"seed": meta["config"]["seed"], "steps": meta["step"],
            "train_seconds": round(sum(h["seconds"] for h in hist), 1),
            "trainable_params": count_parameters(load_acquirer(d).module),
            "val_R@1": hist[-1]["x2en_R@1"] if hist else None}


def image_vectors(enc, files: list[str]) -> tuple[np.ndarray, float | None]:
    """The images' ``concept`` vectors, cached in $XMR_CACHE/bench (keyed by paths, sizes and the model)."""
    import hashlib
    import os

    from xmr.paths import cache_dir

    key = hashlib.sha256(json.dumps([enc.spec, enc.describe().get("adapter_sha256"),
                                     [(f, os.path.getsize(f)) for f in files]]).encode()).hexdigest()[:16]
    path = cache_dir("bench") / f"multilingual_images_{key}.npy"
    if path.is_file():
        return np.load(path), None
    t0 = time.perf_counter()
    v = enc.encode_images(files, batch_size=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, v)
    return v, round(time.perf_counter() - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="Multi30K text folder")
    ap.add_argument("--split", default="test_2016_flickr")
    ap.add_argument("--langs", default="de,fr,cs")
    ap.add_argument("--images", default=None, help="an image folder for part B (e.g. flickr8k-dev/images)")
    ap.add_argument("--seeds", action="append", default=[], metavar="L=DIR,DIR,...", help="part C")
    ap.add_argument("--limit", type=int, default=None, help="first N test lines only (quick look)")
    ap.add_argument("--out", default=None, help="write the results as JSON")
    args = ap.parse_args()

    import xmr
    from xmr.data.multi30k import read_parallel

    langs = [x.strip() for x in args.langs.split(",") if x.strip()]
    seed_langs = [x.partition("=")[0] for x in args.seeds]
    par = read_parallel(args.data, list(dict.fromkeys(["en", *langs, *seed_langs])), args.split)
    n = args.limit or len(par["en"])
    en = par["en"][:n]
    floor_enc = xmr.create_encoder("concept+lang:none")
    enc = xmr.create_encoder("concept")
    res: dict = {"split": args.split, "queries": n, "A": {}, "B": {}, "C": {}}
    g_sent = floor_enc._embed(en)  # English MiniLM sentence vectors (ONNX), the acquirers' targets
    g_concept = floor_enc.encode_text(en)
    from xmr.encoders.base import l2_normalize

    concept = {}  # lang -> (floor, student with lang given, student with lang detected) in concept's query space
    for lang in langs:
        q = par[lang][:n]
        t0 = time.perf_counter()
        s_sent = enc.multilingual.encode(q, lang)  # what encode_text(q, lang=lang) computes before the concept map
        enc_s = time.perf_counter() - t0
        f_sent = floor_enc._embed(q)  # the English tower fed the foreign text
        got = [d["lang"] for d in enc.text_languages(q)]
        routed = np.array([g == lang for g in got])
        d_sent = np.where(routed[:, None], s_sent, f_sent)  # detected as English: the English tower
        for other in set(got) - {lang, "en"}:  # detected as another acquired language: that acquirer
            idx = [i for i, g in enumerate(got) if g == other]
            d_sent[idx] = enc.multilingual.encode([q[i] for i in idx], other)
        f_c, s_c, d_c = (l2_normalize(enc._from_sentence(x).astype(np.float32)) for x in (f_sent, s_sent, d_sent))
        k = min(16, n)  # the shortcut is the product path: check it on the first queries
        assert np.allclose(s_c[:k], enc.encode_text(q[:k], lang=lang), atol=1e-4)
        assert np.allclose(f_c[:k], floor_enc.encode_text(q[:k]), atol=1e-4)
        concept[lang] = (f_c, s_c, d_c)
        row = {"floor_minilm": recall(f_sent, g_sent), "student_minilm": recall(s_sent, g_sent),
               "floor_concept": recall(f_c, g_concept), "student_concept": recall(s_c, g_concept),
               "student_concept_detected": recall(d_c, g_concept),
               "detected_as_lang_%": round(100 * float(routed.mean()), 1),
               "ceiling_R@1": 100.0, "student_encode_seconds": round(enc_s, 1)}
        for space in ("minilm", "concept"):
            row[f"gap_closed_R@1_{space}_%"] = gap_share(row[f"student_{space}"]["R@1"], row[f"floor_{space}"]["R@1"])
        res["A"][lang] = row
        print(f"A {lang}: {json.dumps(row)}", flush=True)
    if args.images:
        from xmr.media import media_type_of

        files = sorted(str(p) for p in Path(args.images).iterdir() if media_type_of(str(p)) == "image")
        imgs, secs = image_vectors(enc, files)
        res["B"]["images"] = len(files)
        res["B"]["image_encode_seconds"] = secs
        ref = g_concept
        for lang in langs:
            f_c, _, d_c = concept[lang]
            res["B"][lang] = {"floor": agreement(f_c, ref, imgs), "student": agreement(d_c, ref, imgs)}
            print(f"B {lang}: {json.dumps(res['B'][lang])}", flush=True)
    for spec in args.seeds:
        lang, _, dirs = spec.partition("=")
        rows = []
        for d in [x for x in dirs.split(",") if x]:
            e = xmr.create_encoder(f"concept+lang:{lang}@{d}")
            info = run_info(Path(d))
            r = recall(e.multilingual.encode(par[lang][:n], lang), g_sent)
            frozen = sum(p.numel() for p in e.multilingual._tower.bert.parameters())
            rows.append({"run": d, **r, **info, "frozen_params": int(frozen)})
        summ = {k: (round(statistics.mean(r[k] for r in rows), 2),
                    round(statistics.stdev(r[k] for r in rows), 2) if len(rows) > 1 else 0.0)
                for k in ("R@1", "R@5", "R@10")}
        res["C"][lang] = {"runs": rows, "mean_std": summ}
        print(f"C {lang}: {json.dumps(res['C'][lang])}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    json.dump(res, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
