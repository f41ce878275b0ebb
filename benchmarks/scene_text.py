"""Experts benchmark: retrieval of images by the words in them (scene text, OCR), and demo numbers for side text
(sidecar captions) and subtitles (moments).

    python benchmarks/scene_text.py                      # 3 seeds x 40 synthetic text images, concept model
    python benchmarks/scene_text.py --n 20 --seeds 0 --no-sidecar --no-subtitles   # a quick look

1. **Scene text** (per seed): ``xmr synth text-images`` (``--n`` signs, one distinct word each, random font among
   PIL's default and the system's TrueType fonts, size, angle up to 15 degrees, plus a coloured shape) and the real
   page of text from ``src/xmr/assets/samples/page.png`` in the same gallery, indexed with ``--experts ocr``. Query
   of a synthetic image: ``a sign that says WORD`` (its words, no quotes); of the page: ``a page of text about
   region-based segmentation with markers of coins and background``. R@1/5/10 (one right image per query) for

   * ``visual``: the first stage alone (the image embedding);
   * ``scene text``: items ranked by their best OCR row's score alone (items without text last);
   * ``fused (vista)``: the experts stage's default rule, cosine to ``v + t`` (``xmr search`` on such an index);
   * ``fused (vista, ocr weight 0.5)``: cosine to ``v + 0.5 t`` (``--expert-weight ocr=0.5``);
   * ``fused (max)``: ``max(s_v, s_t)``;
   * ``phrase``: ``xmr search --phrase WORD`` (exact word in the OCR text; R@1 = the right image is the first of
     the items that contain the word).

   Plus OCR quality (share of synthetic images whose OCR text holds their word) and OCR cost: ms per image measured
   by the indexer's experts pass, and the peak RSS of a fresh process that loads RapidOCR and reads the images.
2. **Side text** (needs ``../shared/data/flickr8k-dev``): ``--sidecar-n`` photos, each with its first human caption
   in ``photo.txt``; queries are the other four captions. Visual vs fused R@1/5/10: how much a caption someone
   wrote next to a photo helps (an upper bound: the sidecar is a caption of the same kind as the query).
3. **Scene-text-free photos** (needs ``../shared/data/flickr8k-dev``): ``--text-free-n`` photos indexed with
   ``--experts ocr`` (OCR finds little or incidental text in them), queries = their five captions. Visual vs fused:
   ViSTA's second claim is that adding scene text must not hurt retrieval of images without it.
4. **Subtitles**: ``--subtitle-n`` synthetic clips, each with an ``.srt`` of three cues at known times; each cue's
   text is a query. Share of queries whose first result is the right clip with exactly that cue's start/end.

Prints a markdown table (mean +- std over seeds) and writes JSON with ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "src" / "xmr" / "assets" / "samples" / "page.png"
PAGE_QUERY = "a page of text about region-based segmentation with markers of coins and background"
FLICKR = REPO.parent / "shared" / "data" / "flickr8k-dev"


def _half_ocr():
    from xmr.retrieval import SearchOptions

    return SearchOptions(experts=(), expert_weights={"ocr": 0.5})


def recall(ranks: list[int], k: int) -> float:
    """Share of queries whose right item is within the top ``k`` (ranks are 1-based; 0 = not returned)."""
    return float(np.mean([0 < r <= k for r in ranks])) if ranks else float("nan")


def _rank_of(ids: list[int], target: int) -> int:
    return ids.index(target) + 1 if target in ids else 0


def _search_ids(pipe, reader, text: str, k: int) -> list[int]:
    from xmr.retrieval import Query

    return [r.id for r in pipe.search(reader, Query.text(text), k=k).results]


def scene_text_seed(seed: int, n: int, model: str, work: Path, enc) -> dict:
    from xmr.index import index_folder, open_reader
    from xmr.retrieval import SearchOptions, build_pipeline
    from xmr.synth.text_images import generate_text_images

    d = work / f"seed{seed}"
    manifest = generate_text_images(d / "synth", n=n, seed=seed)
    gallery = d / "synth" / "images"
    shutil.copy(PAGE, gallery / "page.png")
    rep = index_folder(gallery, d / "idx", enc, show_progress=False, experts=["ocr"])
    ocr_ms = 1000 * rep.experts["seconds"]["ocr"] / max(1, rep.experts["ran"]["ocr"])
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    queries = [(f"a sign that says {' '.join(x['words'])}", str(gallery / Path(x["media"]).name), x["words"])
               for x in lines] + [(PAGE_QUERY, str(gallery / "page.png"), ["segmentation"])]
    store, reader = open_reader(d / "idx")
    try:
        by_path = {r.path: r.id for r in reader.get_items(reader.snap.items.ids().tolist()).values()}
        rows, items, _, vecs = reader.expert_matrix()
        texts = reader.expert_rows(rows.tolist())
        ocr_hit = np.mean([any(w in texts[int(r)].text.upper().replace(" ", "") for r in rows[items == by_path[p]]
                               for w in ws[:1]) for _, p, ws in queries[:-1]])
        pipes = {"visual": build_pipeline(enc, SearchOptions()),
                 "fused (vista)": build_pipeline(enc, SearchOptions(experts=())),
                 "fused (vista, ocr weight 0.5)": build_pipeline(enc, _half_ocr()),
                 "fused (max)": build_pipeline(enc, SearchOptions(experts=(), expert_fusion="max"))}
        ranks: dict[str, list[int]] = {m: [] for m in [*pipes, "scene text", "phrase"]}
        page_rank = {}
        total = reader.count()
        for text, path, words in queries:
            target = by_path[path]
            for name, pipe in pipes.items():
                ranks[name].append(_rank_of(_search_ids(pipe, reader, text, total), target))
            from xmr.retrieval.query import encode_query
            from xmr.retrieval import Query

            s = encode_query(enc, Query.text(text)).score(vecs)
            best: dict[int, float] = {}
            for i, v in zip(items.tolist(), s):
                best[i] = max(best.get(i, -np.inf), float(v))
            order = sorted(best, key=lambda i: -best[i])
            ranks["scene text"].append(_rank_of(order, target))
            ph = build_pipeline(enc, SearchOptions(experts=(), phrase=words[0]))
            ranks["phrase"].append(_rank_of(_search_ids(ph, reader, text, total), target))
            if path.endswith("page.png"):
                page_rank = {m: r[-1] for m, r in ranks.items()}
    finally:
        store.close()
    out = {m: {f"R@{k}": recall(r[:-1], k) for k in (1, 5, 10)} for m, r in ranks.items()}
    return {"seed": seed, "images": n + 1, "recall": out, "page_rank": page_rank, "ocr_word_found": float(ocr_hit),
            "ocr_ms_per_image": ocr_ms}


def ocr_peak_rss(folder: Path) -> dict:
    """Peak RSS (MB) of a fresh process that imports xmr's OCR expert, and after reading every image in ``folder``."""
    # VmHWM (peak RSS of this process image; ru_maxrss would carry the parent's peak across fork + exec)
    code = ("import sys, glob, time\n"
            "def hwm():\n"
            "    return next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM'))\n"
            "from xmr.experts.ocr import OcrExpert, _engine\n"
            "r0 = hwm(); _engine(); r1 = hwm()\n"
            "ex = OcrExpert(); t = time.perf_counter(); fs = sorted(glob.glob(sys.argv[1] + '/*.png'))\n"
            "[ex.extract(f, 'image') for f in fs]\n"
            "dt = (time.perf_counter() - t) / len(fs)\n"
            "print(r0 / 1024, r1 / 1024, hwm() / 1024, dt * 1000)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    return {"rss_after_import_mb": float(out[0]), "rss_engine_loaded_mb": float(out[1]),
            "peak_rss_mb": float(out[2]), "ms_per_image_fresh_process": float(out[3])}


def sidecar_demo(n: int, enc, work: Path) -> dict:
    from xmr.index import index_folder, open_reader
    from xmr.retrieval import SearchOptions, build_pipeline

    caps: dict[str, list[str]] = {}
    for line in (FLICKR / "captions.jsonl").read_text().splitlines():
        x = json.loads(line)
        caps.setdefault(x["image"], []).append(x["caption"])
    photos = sorted(caps)[:n]
    g = work / "sidecar" / "photos"
    g.mkdir(parents=True)
    for p in photos:
        dst = g / Path(p).name
        shutil.copy(FLICKR / p, dst)
        dst.with_suffix(".txt").write_text(caps[p][0])
    index_folder(g, work / "sidecar" / "idx", enc, show_progress=False, experts=["sidecar"])
    store, reader = open_reader(work / "sidecar" / "idx")
    try:
        by_path = {r.path: r.id for r in reader.get_items(reader.snap.items.ids().tolist()).values()}
        pipes = {"visual": build_pipeline(enc, SearchOptions()),
                 "fused (vista)": build_pipeline(enc, SearchOptions(experts=())),
                 "fused (max)": build_pipeline(enc, SearchOptions(experts=(), expert_fusion="max"))}
        ranks = {m: [] for m in pipes}
        for p in photos:
            target = by_path[str(g / Path(p).name)]
            for q in caps[p][1:]:
                for m, pipe in pipes.items():
                    ranks[m].append(_rank_of(_search_ids(pipe, reader, q, 10), target))
    finally:
        store.close()
    return {"photos": n, "queries": len(ranks["visual"]),
            "recall": {m: {f"R@{k}": recall(r, k) for k in (1, 5, 10)} for m, r in ranks.items()}}


def text_free_demo(n: int, enc, work: Path) -> dict:
    from xmr.index import index_folder, open_reader
    from xmr.retrieval import SearchOptions, build_pipeline

    caps: dict[str, list[str]] = {}
    for line in (FLICKR / "captions.jsonl").read_text().splitlines():
        x = json.loads(line)
        caps.setdefault(x["image"], []).append(x["caption"])
    photos = sorted(caps)[-n:]  # the last n (the sidecar demo takes the first ones)
    g = work / "textfree" / "photos"
    g.mkdir(parents=True)
    for p in photos:
        shutil.copy(FLICKR / p, g / Path(p).name)
    rep = index_folder(g, work / "textfree" / "idx", enc, show_progress=False, experts=["ocr"])
    store, reader = open_reader(work / "textfree" / "idx")
    try:
        by_path = {r.path: r.id for r in reader.get_items(reader.snap.items.ids().tolist()).values()}
        ocr_rows = reader.expert_matrix()[0].tolist()
        with_text = len(set(reader.expert_matrix()[1].tolist()))
        ocr_texts = sorted(r.text for r in reader.expert_rows(ocr_rows).values())
        pipes = {"visual": build_pipeline(enc, SearchOptions()),
                 "fused (vista)": build_pipeline(enc, SearchOptions(experts=())),
                 "fused (vista, ocr weight 0.5)": build_pipeline(enc, _half_ocr()),
                 "fused (max)": build_pipeline(enc, SearchOptions(experts=(), expert_fusion="max"))}
        ranks = {m: [] for m in pipes}
        for p in photos:
            target = by_path[str(g / Path(p).name)]
            for q in caps[p]:
                for m, pipe in pipes.items():
                    ranks[m].append(_rank_of(_search_ids(pipe, reader, q, 10), target))
    finally:
        store.close()
    return {"photos": n, "with_ocr_text": with_text, "ocr_texts": ocr_texts, "queries": len(ranks["visual"]),
            "ocr_ms_per_image": 1000 * rep.experts["seconds"]["ocr"] / max(1, rep.experts["ran"]["ocr"]),
            "recall": {m: {f"R@{k}": recall(r, k) for k in (1, 5, 10)} for m, r in ranks.items()}}


def subtitle_demo(n: int, enc, work: Path) -> dict:
    from xmr.index import index_folder, open_reader
    from xmr.retrieval import SearchOptions, build_pipeline
    from xmr.synth.videos import generate_videos

    manifest = generate_videos(work / "subs", n=n, seed=5, frames=64, fps=8)
    clips = sorted(manifest.parent.rglob("*.mp4"))
    topics = ["the train leaves from platform nine", "a chef slices fresh tomatoes", "the goalkeeper saves a penalty",
              "snow falls on the mountain village", "a violinist tunes her instrument", "the rocket lifts off at dawn",
              "children feed ducks at the pond", "a mechanic repairs the old truck", "fireworks light up the harbor"]
    cues = []
    for j, c in enumerate(clips):
        lines = []
        for m in range(3):
            t = topics[(3 * j + m) % len(topics)] + f" (clip {j})"
            start, end = 1.0 + 2.5 * m, 2.5 + 2.5 * m
            lines.append(f"{m + 1}\n00:00:0{int(start)},{int(start % 1 * 1000):03d} --> "
                         f"00:00:0{int(end)},{int(end % 1 * 1000):03d}\n{t}\n")
            cues.append((str(c), t, start, end))
        c.with_suffix(".srt").write_text("\n".join(lines))
    index_folder(manifest.parent, work / "subs" / "idx", enc, show_progress=False, experts=["subtitles"])
    store, reader = open_reader(work / "subs" / "idx")
    from xmr.retrieval import Query

    ok = 0
    try:
        pipe = build_pipeline(enc, SearchOptions(experts=()))
        for path, text, start, end in cues:
            r = pipe.search(reader, Query.text(text), k=1).results[0]
            ok += r.path == path and r.start == start and r.end == end and r.match == "subtitles"
    finally:
        store.close()
    return {"clips": len(clips), "queries": len(cues), "right_clip_and_moment": ok / len(cues)}


def _print_scene(args, seeds: list[dict], rss: dict) -> None:
    print(f"## Scene text ({args.n} synthetic text images + the sample page per seed, model {args.model}, "
          f"seeds {args.seeds})\n")
    print("| mode | R@1 | R@5 | R@10 | page's rank |\n| --- | --- | --- | --- | --- |")
    for m in seeds[0]["recall"]:
        cells = [_ms([s["recall"][m][f"R@{k}"] for s in seeds]) for k in (1, 5, 10)]
        print(f"| {m} | {' | '.join(cells)} | {', '.join(str(s['page_rank'][m]) for s in seeds)} |")
    print(f"\nOCR found the word in {_ms([s['ocr_word_found'] for s in seeds])} of the images; "
          f"{_ms([s['ocr_ms_per_image'] for s in seeds])} ms per image in the indexer; fresh process: "
          f"{rss['ms_per_image_fresh_process']:.0f} ms per image, RSS {rss['rss_after_import_mb']:.0f} MB after "
          f"import, {rss['rss_engine_loaded_mb']:.0f} MB with the engine, peak {rss['peak_rss_mb']:.0f} MB")


def _ms(vals: list[float]) -> str:
    return f"{statistics.mean(vals):.3f} +- {statistics.stdev(vals) if len(vals) > 1 else 0.0:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="synthetic text images per seed (default 40)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--model", default="concept")
    ap.add_argument("--sidecar-n", type=int, default=100)
    ap.add_argument("--subtitle-n", type=int, default=3)
    ap.add_argument("--text-free-n", type=int, default=100, help="flickr8k-dev photos OCR'd (0: skip)")
    ap.add_argument("--no-scene-text", action="store_true", help="skip part 1 (the synthetic text images)")
    ap.add_argument("--no-sidecar", action="store_true")
    ap.add_argument("--no-subtitles", action="store_true")
    ap.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = ap.parse_args(argv)
    from xmr import create_encoder

    enc = create_encoder(args.model)
    work = Path(tempfile.mkdtemp(prefix="xmr-scene-text-"))
    t0 = time.time()
    try:
        seeds = [] if args.no_scene_text else [scene_text_seed(s, args.n, args.model, work, enc) for s in args.seeds]
        rss = ocr_peak_rss(work / f"seed{args.seeds[0]}" / "synth" / "images") if seeds else None
        side = None if args.no_sidecar or not FLICKR.is_dir() else sidecar_demo(args.sidecar_n, enc, work)
        free = None if not args.text_free_n or not FLICKR.is_dir() else text_free_demo(args.text_free_n, enc, work)
        subs = None if args.no_subtitles else subtitle_demo(args.subtitle_n, enc, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res = {"model": args.model, "n": args.n, "seeds": seeds, "ocr_memory": rss, "sidecar": side, "text_free": free,
           "subtitles": subs, "seconds": round(time.time() - t0, 1)}
    if seeds:
        _print_scene(args, seeds, rss)
    for title, part in (("Side text (flickr8k-dev: caption 1 as photo.txt, queries = captions 2-5)", side),
                        ("Scene-text-free photos (flickr8k-dev, --experts ocr, queries = their captions)", free)):
        if part:
            extra = f"; OCR text in {part['with_ocr_text']} of them" if "with_ocr_text" in part else ""
            print(f"\n## {title}: {part['photos']} photos, {part['queries']} queries{extra}\n")
            print("| mode | R@1 | R@5 | R@10 |\n| --- | --- | --- | --- |")
            for m, r in part["recall"].items():
                print(f"| {m} | {r['R@1']:.3f} | {r['R@5']:.3f} | {r['R@10']:.3f} |")
    if subs:
        print(f"\n## Subtitles: {subs['queries']} cue queries over {subs['clips']} clips: right clip and exact "
              f"cue start/end first for {subs['right_clip_and_moment']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
