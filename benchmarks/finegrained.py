"""Fine-grained re-ranking (IMRAM, WCGL, xattn) on top of a dual encoder, in a world where word-region binding matters.

The world: 32x32 images with two coloured shapes, one in the left half and one in the right half ("a red circle
left of a blue square"). Kinds are 4 colours x 3 shapes; the test gallery holds every ordered pair of two different
kinds exactly once (132 images), so for each caption the gallery also holds its left-right swap ("a blue square left
of a red circle") and the images that swap one attribute (colour or shape) between the two objects: only binding
each word to the right region tells them apart. Each image has two true captions ("X left of Y", "Y right of X").
Training images are drawn independently (random kinds and positions, other pixel noise).

Per seed (world, dual encoder and re-rankers all seeded):

1. the dual encoder: a ``tiny`` model trained from scratch with ``xmr train`` (mode full, InfoNCE) on the training
   images, loaded as ``trained:DIR`` (which also gives its word and patch tokens);
2. three re-rankers over that encoder's frozen tokens, trained by ``xmr.rerank.train_matcher`` on the same training
   images with hard negatives from the dual encoder's top-k: ``xattn`` (BCE), ``imram`` (K=3 steps, both
   directions, hinge), ``wcgl`` (hinge + Wasserstein discriminant loss);
3. on the test gallery: the dual encoder's text->image R@1/5/10, then each re-ranker on each caption's top-K
   (``xmr.rerank.rerank_dense``, alpha 0: the re-ranker's order inside the top K), for several K; the time per query
   (re-ranker seconds / queries, a fresh image cache per K so token encoding is included); and the **swap accuracy**:
   the share of captions whose image scores above its left-right swapped image (the dual encoder's cosine vs the
   re-ranker's score; 50 % = chance), and the **colour accuracy**: the same against the image with the two objects'
   colours exchanged (same shapes in the same places; captions whose objects share a colour or a shape left out).

    python benchmarks/finegrained.py                         # 3 seeds, defaults below
    python benchmarks/finegrained.py --seeds 0 --dual-epochs 5 --rr-epochs 3 --ks 10   # a quick look

Prints one markdown table (mean +- std over seeds) and writes the per-seed numbers as JSON (``--json``); seeds run
as separate processes are combined with ``--merge a.json b.json c.json``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from itertools import permutations
from pathlib import Path

import numpy as np

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 240), "yellow": (235, 220, 40)}
SHAPES = ("circle", "square", "triangle")
KINDS = [(c, s) for c in COLOURS for s in SHAPES]
SIZE = 32


def draw(left, right, rng) -> np.ndarray:
    from xmr.synth._shapes import shape_mask

    img = np.full((SIZE, SIZE, 3), 25, np.int16)
    r = rng.uniform(4.0, 5.5)
    for (colour, shape), (x0, x1) in ((left, (0.08, 0.42)), (right, (0.58, 0.92))):
        cx = rng.uniform(x0 * SIZE + r * 0.5, x1 * SIZE - r * 0.5)
        cy = rng.uniform(r + 1, SIZE - r - 1)
        img[shape_mask(shape, cx, cy, r, SIZE, triangle_slope=0.6)] = COLOURS[colour]
    img += rng.integers(-8, 9, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def captions(left, right) -> list[str]:
    a, b = " ".join(left), " ".join(right)
    return [f"a {a} left of a {b}", f"a {b} right of a {a}"]


def make_world(out: Path, n_train: int, seed: int) -> Path:
    """Write images and ``captions.jsonl`` (manifest with train/test splits); return the manifest."""
    from PIL import Image

    rng = np.random.default_rng([seed, 7])
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    test_pairs = list(permutations(range(len(KINDS)), 2))  # 132 ordered pairs of different kinds
    train_pairs = [tuple(rng.choice(len(KINDS), 2, replace=False)) for _ in range(n_train)]
    for split, pairs in (("test", test_pairs), ("train", train_pairs)):
        for i, (a, b) in enumerate(pairs):
            name = f"images/{split}-{i:05d}.png"
            Image.fromarray(draw(KINDS[a], KINDS[b], rng)).save(out / name)
            lines.append({"media": name, "captions": captions(KINDS[a], KINDS[b]), "split": split,
                          "left": int(a), "right": int(b)})
    manifest = out / "captions.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest


def contrast_columns(manifest: Path, ds) -> tuple[np.ndarray, np.ndarray]:
    """For each test text: the gallery column of its image's left-right swap, and of its image with the two colours
    exchanged (same shapes, same places; -1 where the two objects share a colour or a shape, so that the exchange
    gives the image itself or the left-right swap)."""
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    test = [r for r in rows if r["split"] == "test"]
    where = {(r["left"], r["right"]): j for j, r in enumerate(test)}
    assert [str(Path(manifest).parent / r["media"]) for r in test] == [str(m) for m in ds.media]
    swapped = np.array([where[(r["right"], r["left"])] for r in test])
    index = {k: i for i, k in enumerate(KINDS)}
    colours = []
    for r in test:
        (ca, sa), (cb, sb) = KINDS[r["left"]], KINDS[r["right"]]
        colours.append(where[(index[(cb, sa)], index[(ca, sb)])] if ca != cb and sa != sb else -1)
    return swapped[ds.text_to_item], np.asarray(colours)[ds.text_to_item]


def contrast_accuracy(score, t2i: np.ndarray, swap: np.ndarray, colour: np.ndarray) -> dict:
    """``score(texts idx, items idx) -> scores``: % of captions whose image beats its left-right swap, and its
    colour-exchanged image (where defined). 50 % is chance."""
    q = np.arange(len(t2i))
    c = colour >= 0
    return {"swap_acc": float(100.0 * np.mean(score(q, t2i) > score(q, swap))),
            "colour_acc": float(100.0 * np.mean(score(q[c], t2i[c]) > score(q[c], colour[c])))}


def run_seed(seed: int, a, work: Path) -> dict:
    import torch

    from xmr import create_encoder
    from xmr.data import load_dataset
    from xmr.eval import evaluate_sims
    from xmr.rerank import (CrossAttentionMatcher, CrossMatcherConfig, IMRAMConfig, IMRAMMatcher,
                            MatcherTrainConfig, TokenReranker, WCGLConfig, WCGLMatcher, rerank_dense, train_matcher)
    from xmr.train import TrainConfig, train

    work = work.resolve()  # the re-rankers' configs name the dual encoder by this path
    manifest = work / "world" / "captions.jsonl"
    if not manifest.is_file():  # --work: a world written by an earlier run is reused
        manifest = make_world(work / "world", a.train_images, seed)
    t0 = time.perf_counter()
    if not (work / "dual" / "checkpoints" / f"epoch-{a.dual_epochs:04d}").is_dir():  # else: trained earlier
        train(TrainConfig(dataset=f"manifest:{manifest}", model="tiny", mode="full", split="train", eval_split="test",
                          epochs=a.dual_epochs, batch_size=64, lr=a.dual_lr, seed=seed,
                          tiny={"image_size": SIZE, "context_length": 48, "seed": seed}),
              work / "dual", show_progress=False, resume=(work / "dual" / "checkpoints").is_dir())
    dual_s = time.perf_counter() - t0
    enc = create_encoder(f"trained:{work / 'dual'}", device="cpu")
    tr = load_dataset(f"manifest:{manifest}?split=train")
    te = load_dataset(f"manifest:{manifest}?split=test")
    swap, colour = contrast_columns(manifest, te)
    tr_sims = enc.encode_text(tr.texts) @ enc.encode_images(tr.media).T
    sims = enc.encode_text(te.texts) @ enc.encode_images(te.media).T
    res = {"seed": seed, "dual_train_s": round(dual_s, 1), "queries": int(te.num_texts), "gallery": len(te),
           "dual": {**{k: evaluate_sims(sims, te.text_to_item)["t2i"][k] for k in ("R@1", "R@5", "R@10")},
                    **contrast_accuracy(lambda a, b: sims[a, b], te.text_to_item, swap, colour)}}
    w = enc.token_width
    makers = {
        "xattn": lambda: CrossAttentionMatcher(CrossMatcherConfig(width=w, encoder=f"trained:{work / 'dual'}",
                                                                  seed=seed)),
        "imram": lambda: IMRAMMatcher(IMRAMConfig(width=w, encoder=f"trained:{work / 'dual'}", dim=64, steps=3,
                                                  seed=seed)),
        "wcgl": lambda: WCGLMatcher(WCGLConfig(width=w, encoder=f"trained:{work / 'dual'}", dim=64, keys=8,
                                               epsilon=0.1, sinkhorn_iters=10, seed=seed)),
    }
    for name in a.rerankers.split(","):
        t1 = time.perf_counter()
        rr = train_matcher(makers[name](), enc, tr.texts, tr.media, tr.text_to_item,
                           MatcherTrainConfig(negatives=3, hard_k=8, epochs=a.rr_epochs, batch_size=64, lr=a.rr_lr,
                                              seed=seed), sims=tr_sims, out=work / name,
                           resume=(work / name / "checkpoints").is_dir())
        entry = {"train_s": round(time.perf_counter() - t1, 1), "final_pair_acc": rr.info["final_pair_acc"]}
        with torch.no_grad():
            entry.update(contrast_accuracy(lambda a, b: rr.score(te.texts, te.media, np.stack([a, b], 1)),
                                           te.text_to_item, swap, colour))
        for k in map(int, a.ks.split(",")):
            for alpha in map(float, a.alphas.split(",")):
                fresh = TokenReranker(rr.matcher, enc, rr.info)  # a fresh image cache: token encoding is timed
                out, info = rerank_dense(sims, te.texts, te.media, fresh, k=k, alpha=alpha)
                m = evaluate_sims(out, te.text_to_item)["t2i"]
                entry[key(k, alpha)] = {**{x: m[x] for x in ("R@1", "R@5", "R@10")}, "pairs": info["pairs_scored"],
                                        "ms_per_query": 1000.0 * info["cross_s"] / te.num_texts}
        res[name] = entry
        print(f"seed {seed} {name}: {json.dumps(entry)}", flush=True)
    print(f"seed {seed} dual: {json.dumps(res['dual'])}", flush=True)
    return res


def key(k: int, alpha: float) -> str:
    return f"K={k}" if alpha == 0 else f"K={k},alpha={alpha:g}"


def ms(vals) -> str:
    v = np.asarray(vals, dtype=float)
    return f"{v.mean():.1f} ± {v.std():.1f}"


def table(runs: list[dict], ks: list[int], names: list[str], alphas: list[float] = (0.0,)) -> str:
    out = ["| method | K | alpha | R@1 | R@5 | R@10 | R@1 gain | ms / query | swap acc. | colour acc. |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    d = [r["dual"] for r in runs]
    out.append(f"| dual encoder (tiny, trained) | - | - | {ms([x['R@1'] for x in d])} | {ms([x['R@5'] for x in d])} | "
               f"{ms([x['R@10'] for x in d])} | - | - | {ms([x['swap_acc'] for x in d])} | "
               f"{ms([x['colour_acc'] for x in d])} |")
    for n in names:
        for k, alpha in ((k, alpha) for k in ks for alpha in alphas):
            if any(key(k, alpha) not in r[n] for r in runs):
                continue
            e = [r[n][key(k, alpha)] for r in runs]
            gain = [x["R@1"] - r["dual"]["R@1"] for x, r in zip(e, runs)]
            out.append(f"| {n} | {k} | {alpha:g} | {ms([x['R@1'] for x in e])} | {ms([x['R@5'] for x in e])} | "
                       f"{ms([x['R@10'] for x in e])} | {ms(gain)} | {ms([x['ms_per_query'] for x in e])} | "
                       f"{ms([r[n]['swap_acc'] for r in runs])} | {ms([r[n]['colour_acc'] for r in runs])} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--train-images", type=int, default=600)
    p.add_argument("--dual-epochs", type=int, default=30)
    p.add_argument("--dual-lr", type=float, default=2e-3)
    p.add_argument("--rr-epochs", type=int, default=10)
    p.add_argument("--rr-lr", type=float, default=2e-3)
    p.add_argument("--rerankers", default="xattn,imram,wcgl")
    p.add_argument("--ks", default="5,10,50")
    p.add_argument("--alphas", default="0", help="score mixing: alpha * dual + (1 - alpha) * re-ranker")
    p.add_argument("--work", help="keep the worlds, dual encoders and re-rankers in WORK/seed-N (default: a temporary "
                   "folder); what is there is reused (a re-ranker's training resumes from its checkpoints)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the per-seed results here")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="print the table of earlier --json files (seeds run "
                   "as separate processes) instead of running")
    a = p.parse_args()
    if a.merge:
        files = [json.loads(Path(f).read_text()) for f in a.merge]
        runs = [r for f in files for r in f["runs"]]
        args = files[0]["args"]
        print(f"{len(runs)} seed(s) ({', '.join(str(r['seed']) for r in runs)}); gallery {runs[0]['gallery']} images, "
              f"{runs[0]['queries']} captions; text->image, mean ± std over seeds\n")
        alphas = sorted({float(x) for f in files for x in f["args"].get("alphas", "0").split(",")})
        print(table(runs, list(map(int, args["ks"].split(","))), args["rerankers"].split(","), alphas))
        return

    import torch

    torch.set_num_threads(a.threads)
    runs = []
    t0 = time.perf_counter()
    for seed in map(int, a.seeds.split(",")):
        if a.work:
            runs.append(run_seed(seed, a, Path(a.work) / f"seed-{seed}"))
            continue
        with tempfile.TemporaryDirectory() as d:
            runs.append(run_seed(seed, a, Path(d)))
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "runs": runs}, indent=1) + "\n")
    print(f"\n{len(runs)} seed(s), {time.perf_counter() - t0:.0f} s; gallery {runs[0]['gallery']} images, "
          f"{runs[0]['queries']} captions; text->image, mean ± std over seeds\n")
    print(table(runs, list(map(int, a.ks.split(","))), a.rerankers.split(","), list(map(float, a.alphas.split(",")))))


if __name__ == "__main__":
    main()
