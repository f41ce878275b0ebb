"""Quality of the offline ``concept`` model on real photos (issue 17): feature cache, ablation, bundled adapter.

The classifier pass is the only expensive part, so it runs once per dataset and is cached; every row of the
ablation is then computed from the cache with the same arithmetic as ``ConceptEncoder`` (the cache reproduces the
``xmr eval`` numbers of the default exactly: coco-mini t2i R@1 33.7, i2t R@1 38.4).

    # 1. cache: per image the class logits of 7 views (centre crop + the 6 multi-crop views), ~1 s/image on a core
    python benchmarks/concept_quality.py cache coco:../shared/data/coco-mini cache/coco.npz
    python benchmarks/concept_quality.py cache manifest:../shared/data/flickr8k-dev/captions.jsonl cache/f8k.npz \
        [--start 0 --stop 125]   # parts can run in parallel and are merged with `merge`
    # 2. ablation table (docs/concept.md), QB-Norm with a Multi30K querybank included
    python benchmarks/concept_quality.py ablation --flickr cache/f8k.npz --coco cache/coco.npz \
        --multi30k ../shared/data/multi30k
    # 3. the bundled QB-Norm querybank (src/xmr/assets/querybanks/multi30k-en-train-5k.txt) and its shipped MiniLM
    #    embeddings (multi30k-en-train-5k.minilm.npy / .json: concept's default QB-Norm encodes no bank text)
    python benchmarks/concept_quality.py build-querybank --multi30k ../shared/data/multi30k
    python benchmarks/concept_quality.py bank-embeddings --name multi30k-en-train-5k
    # 4. the bundled adapter (src/xmr/assets/concept/<name>/), fitted on the cached datasets' captions and images
    python benchmarks/concept_quality.py build-adapter --name flickr8k-coco --train cache/f8k.npz cache/coco.npz

Timing: ``encode`` costs come from the cache pass (seconds per image, all views) and are noted with the machine
load, since other jobs share the cores.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
import time
from pathlib import Path

import numpy as np


# ---------------------------------------------------------------------------------------------------- cache
def cache_dataset(spec: str, out: str, backbone: str = "lite0", batch: int = 8, start: int = 0,
                  stop: int | None = None) -> None:
    """Logits of the centre crop + the encoder's 6 multi-crop views for images ``start:stop`` of ``spec``."""
    from xmr.data import load_dataset
    from xmr.encoders.concept import ConceptConfig, ConceptEncoder
    from xmr.media.image import load_image

    ds = load_dataset(spec, check_media=True)
    enc = ConceptEncoder(ConceptConfig(backbone=backbone, views="multicrop"))
    media = ds.media[start:stop]
    logits_all = []
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    for s in range(0, len(media), batch):
        ims = [load_image(p) for p in media[s : s + batch]]
        views = [[enc.pre.resize_crop(im)] + enc._views(im) for im in ims]  # centre crop, then the encoder's views
        x = np.stack([np.asarray(v) for vs in views for v in vs])  # (B * 7, res, res, 3) uint8: the net normalises
        z = np.asarray(enc.net(x), dtype=np.float32)
        logits_all.append(z.reshape(len(ims), len(views[0]), -1))
        print(f"{s + len(ims)}/{len(media)} {time.perf_counter() - t0:.0f}s", flush=True)
    np.savez(out, logits=np.concatenate(logits_all).astype(np.float32), media=np.array(media),
             all_media=np.array(ds.media), texts=np.array(ds.texts), text_to_item=np.asarray(ds.text_to_item),
             start=start, seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - cpu0,
             backbone=backbone, spec=ds.spec)
    print(f"wrote {out}: {len(media)} images")


def merge_parts(parts: list[str], out: str) -> None:
    ds = [dict(np.load(p)) for p in parts]
    ds.sort(key=lambda d: int(d["start"]))
    m = {k: v for k, v in ds[0].items() if k != "feats"}  # (older caches also held pooled features)
    m["logits"] = np.concatenate([d["logits"] for d in ds])
    m["media"] = np.concatenate([d["media"] for d in ds])
    m["seconds"] = sum(float(d["seconds"]) for d in ds)
    m["cpu_seconds"] = sum(float(d.get("cpu_seconds", np.nan)) for d in ds)
    if len(m["media"]) != len(m["all_media"]) or (m["media"] != m["all_media"]).any():
        raise SystemExit("the parts do not cover the dataset's images in order")
    np.savez(out, **m)
    print(f"wrote {out}: {len(m['media'])} images")


# ---------------------------------------------------------------------------------------------------- helpers
def _softmax(z, t=1.0):
    z = z / t
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


class Cached:
    """One cached dataset: class probabilities (multi-crop and centre), caption embeddings, text->image map."""

    def __init__(self, path: str, enc):
        d = np.load(path)
        self.path, self.spec = path, str(d["spec"]) if "spec" in d.files else path
        self.logits = d["logits"]
        self.pm = _softmax(self.logits[:, 1:]).mean(1)  # the default's multi-crop probabilities
        self.zm = self.logits[:, 1:].mean(1)  # ... and view-mean logits (the adapter's "logits" features)
        self.pmax = _softmax(self.logits[:, 1:]).max(1)  # max over views (a measured, not adopted, extra)
        self.media = [str(m) for m in d["media"]]
        self._colour = self._people = None
        self.pc = _softmax(self.logits[:, 0])  # centre crop only (concept:fast)
        self.texts = [str(t) for t in d["texts"]]
        self.t2i = np.asarray(d["text_to_item"])
        self.sec_per_image = float(d["seconds"]) / len(self.pm)
        self.q = _embed_cached(enc, self.texts, Path(path).with_suffix(".q.npy"))

    def subset(self, items: np.ndarray) -> "Cached":
        s = object.__new__(Cached)
        m = np.isin(self.t2i, items)
        remap = -np.ones(len(self.pm), int)
        remap[items] = np.arange(len(items))
        s.pm, s.pc, s.q, s.t2i = self.pm[items], self.pc[items], self.q[m], remap[self.t2i[m]]
        s.zm, s.pmax, s.logits = self.zm[items], self.pmax[items], self.logits[items]
        s.media = [self.media[i] for i in items]
        s._colour = None if self._colour is None else self._colour[items]
        s._people = None if self._people is None else self._people[items]
        s.texts = [t for t, k in zip(self.texts, m) if k]
        return s

    @property
    def colour(self) -> np.ndarray:
        """Colour-name features (concept_colour.py), computed from the images once and kept next to the cache."""
        if self._colour is None:
            from concept_rounds import colours

            p = Path(self.path).with_suffix(".colour.npy")
            self._colour = np.load(p) if p.exists() else colours(self)
            np.save(p, self._colour)
        return self._colour

    @property
    def people(self) -> np.ndarray:
        """MediaPipe people features (concept_people.py), extracted beforehand in a separate venv, next to the cache."""
        if self._people is None:
            p = Path(self.path).with_suffix(".people.npy")
            if not p.exists():
                raise SystemExit(f"{p} missing: run benchmarks/concept_people.py extract {self.path} (its docstring "
                                 "says how to make the mediapipe venv)")
            self._people = np.load(p)
            if len(self._people) != len(self.pm):
                raise SystemExit(f"{p} has {len(self._people)} rows for {len(self.pm)} cached images: extract again")
        return self._people

    def query_subset(self, mask: np.ndarray) -> "Cached":
        """The captions selected by ``mask``, against the whole gallery."""
        s = object.__new__(Cached)
        s.__dict__.update(self.__dict__)
        s.q, s.t2i = self.q[mask], self.t2i[mask]
        s.texts = [t for t, k in zip(self.texts, mask) if k]
        return s


def _embed_cached(enc, texts: list[str], path: Path) -> np.ndarray:
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    p = path.with_name(f"{path.stem}.{key}.npy")
    if p.exists():
        return np.load(p)
    q = enc._embed(texts)
    np.save(p, q)
    return q


def _metrics(sims, t2i):
    from xmr.eval import evaluate_sims

    return evaluate_sims(sims, t2i)


def _row(label, r, cost):
    t, i = r["t2i"], r["i2t"]
    return (f"| {label} | {t['R@1']:.1f} | {t['R@5']:.1f} | {t['R@10']:.1f} | {i['R@1']:.1f} | {i['R@5']:.1f} | "
            f"{i['R@10']:.1f} | {cost} |")


def _fit_on(sets, ridge, info, features="sqrtp", caption_ridge=0.0):
    from xmr.encoders.concept_adapter import ConceptAdapter

    off = np.cumsum([0] + [len(s.pm) for s in sets])
    return ConceptAdapter.fit(np.concatenate([s.q for s in sets]), np.concatenate([s.pm for s in sets]),
                              np.concatenate([s.t2i + o for s, o in zip(sets, off)]), ridge=ridge, training=info,
                              logits=np.concatenate([s.zm for s in sets]), image_features=features,
                              caption_ridge=caption_ridge)


# ---------------------------------------------------------------------------------------------------- ablation
def ablation(args) -> None:
    from xmr.encoders.concept import ConceptConfig, ConceptEncoder
    from xmr.rescore.qbnorm import qb_norm

    enc = ConceptEncoder(ConceptConfig())
    F, C = Cached(args.flickr, enc), Cached(args.coco, enc)

    def zs(S, p=None, T=0.05):
        w = _softmax(S.q @ enc.class_emb.T, T)
        return np.sqrt(w) @ np.sqrt(S.pm if p is None else p).T

    def with_adapter(S, ad, a, base=None):
        return (1 - a) * (zs(S) if base is None else base) + a * ad.text(S.q) @ ad.image(S.pm).T

    print(f"flickr8k-dev: {len(F.pm)} images, {len(F.q)} captions; coco-mini: {len(C.pm)} images, {len(C.q)} captions")
    print(f"image encoding, multi-crop: {F.sec_per_image:.2f} s/image wall in the cache pass (loaded machine)\n")
    head = "| model | t2i R@1 | R@5 | R@10 | i2t R@1 | R@5 | R@10 | extra cost |\n|---|---:|---:|---:|---:|---:|---:|---|"
    for S, name in ((F, "flickr8k-dev (498 images)"), (C, "coco-mini (159 images)")):
        print(f"\n### {name}\n{head}")
        print(_row("zero-shot default (multi-crop)", _metrics(zs(S), S.t2i), "-"), flush=True)
        print(_row("concept:fast (centre crop)", _metrics(zs(S, S.pc), S.t2i), "1/6 of the image cost"))
        for T in (0.03, 0.1):
            print(_row(f"text temperature {T}", _metrics(zs(S, T=T), S.t2i), "none"))

    # adapters fitted on the *other* dataset: every image and caption evaluated is unseen by the fit
    print(f"\n### adapter fitted on the other dataset (ridge {args.ridge})\n{head}")
    ad_c = _fit_on([C], args.ridge, {})
    ad_f = _fit_on([F], args.ridge, {})
    for a in args.weights:
        print(_row(f"flickr8k-dev, adapter[coco-mini] a={a}", _metrics(with_adapter(F, ad_c, a), F.t2i), "text side only"))
    for a in args.weights:
        print(_row(f"coco-mini, adapter[flickr8k-dev] a={a}", _metrics(with_adapter(C, ad_f, a), C.t2i), "text side only"))

    # split-half on flickr8k-dev: fit on half A (+ coco-mini), evaluate on half B's 249 images only; 3 seeds x 2
    print(f"\n### flickr8k-dev split in halves: fit on one half (+ coco-mini), test on the other half's gallery "
          f"(249 images); mean ± std over 3 seeds x 2 halves\n{head}")
    res: dict[str, list] = {}
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(len(F.pm))
        halves = [np.sort(perm[: len(perm) // 2]), np.sort(perm[len(perm) // 2 :])]
        for h in (0, 1):
            A, B = F.subset(halves[h]), F.subset(halves[1 - h])
            res.setdefault("zero-shot default", []).append(_metrics(zs(B), B.t2i))
            for tag, sets in (("adapter[half]", [A]), ("adapter[half + coco-mini]", [A, C])):
                ad = _fit_on(sets, args.ridge, {})
                for a in args.weights:
                    res.setdefault(f"{tag} a={a}", []).append(_metrics(with_adapter(B, ad, a), B.t2i))
    for k, rs in res.items():
        cells = []
        for d in ("t2i", "i2t"):
            for r in ("R@1", "R@5", "R@10"):
                v = [x[d][r] for x in rs]
                cells.append(f"{np.mean(v):.1f} ± {np.std(v):.1f}")
        print(f"| {k} | " + " | ".join(cells) + " | |", flush=True)

    # QB-Norm (t2i only) with a querybank of Multi30K English training captions
    if args.multi30k:
        bank = [l.strip() for l in gzip.open(Path(args.multi30k) / "train.en.gz", "rt", encoding="utf-8")
                if l.strip()][: args.bank_size]
        bq = _embed_cached(enc, bank, Path(args.flickr).with_name("multi30k_bank.q.npy"))
        wb = np.sqrt(_softmax(bq @ enc.class_emb.T, 0.05))
        print(f"\n### QB-Norm, querybank: first {len(bank)} Multi30K train.en captions (t2i re-scored)\n{head}")
        for S, name in ((F, "flickr8k-dev"), (C, "coco-mini")):
            s, bs = zs(S), wb @ np.sqrt(S.pm).T
            for beta in (10.0, 20.0):
                r = _metrics(s, S.t2i)
                r["t2i"] = _metrics(qb_norm(s, bs, beta=beta), S.t2i)["t2i"]
                print(_row(f"{name} zero-shot + QB-Norm beta={beta}", r, "bank x gallery scores"))
            ad = ad_c if S is F else ad_f
            a = args.weights[len(args.weights) // 2]
            s = with_adapter(S, ad, a)
            b2 = (1 - a) * bs + a * ad.text(bq) @ ad.image(S.pm).T
            r = _metrics(s, S.t2i)
            r["t2i"] = _metrics(qb_norm(s, b2, beta=20.0), S.t2i)["t2i"]
            print(_row(f"{name} adapter[other set] a={a} + QB-Norm beta=20", r, "bank x gallery scores"))


# ---------------------------------------------------------------------------------------------------- round 2
def ablation2(args) -> None:
    """Issue 17 round 2 (concept_rounds.py): recipes x protocols, backbones, QB-Norm banks."""
    import concept_rounds as cr

    from xmr.encoders.concept import ConceptConfig, ConceptEncoder

    enc = ConceptEncoder(ConceptConfig())
    ce = enc.class_emb
    F, C = Cached(args.flickr, enc), Cached(args.coco, enc)
    F.colour, C.colour  # computed once (and saved next to the caches) before the sets are split
    rows = cr.ROWS if not args.only else [r for r in cr.ROWS if any(o in r[0] for o in args.only)]
    people = [Path(S.path).with_suffix(".people.npy") for S in (F, C)]
    needs_people = [r for r in rows if r[1] and (r[1].get("people") or r[1].get("pterm"))]
    if needs_people and not args.only and not all(p.exists() for p in people):
        rows = [r for r in rows if r not in needs_people]  # said below, not silent
        print(f"{len(needs_people)} MediaPipe people rows skipped: {' / '.join(map(str, people))} missing "
              "(benchmarks/concept_people.py extract, in its own venv)")
    elif needs_people:
        F.people, C.people  # loaded before the sets are split (a missing file stops the run with the command to run)
    print(f"check: generic recipe vs the shipped ConceptAdapter, max |diff| = {cr.check_shipped_code(F, C, ce):.2e}")
    print(f"\n### recipes (EfficientNet-Lite0, multi-crop)\n{cr.HEAD}")
    for label, r, cost in rows:
        print(f"| {label} | " + " | ".join(cr.fmt(cr.protocols(r, F, C, ce, _metrics))) + f" | {cost} |", flush=True)
    default = dict(features="logits", a=0.3, b=0.3, caption_ridge=10.0)
    for name, fpath, cpath in args.backbone or []:
        Fb, Cb = Cached(fpath, enc), Cached(cpath, enc)
        for label, r in (("zero-shot", None), ("default recipe", default)):
            cells = cr.fmt(cr.protocols(r, Fb, Cb, ce, _metrics))
            print(f"| {name}: {label} | " + " | ".join(cells) + f" | {Fb.sec_per_image:.2f} s/image in its cache pass |",
                  flush=True)
    if args.multi30k:
        lines = [l.strip() for l in gzip.open(Path(args.multi30k) / "train.en.gz", "rt", encoding="utf-8") if l.strip()]
        for n in args.bank_sizes:
            bank = lines[:n]
            bq = _embed_cached(enc, bank, Path(args.flickr).with_name(f"multi30k_bank{len(bank)}.q.npy"))
            for label, r in (("zero-shot", None), ("default recipe", default)):
                cells = cr.fmt(cr.protocols(r, F, C, ce, _metrics, bank=bq))
                print(f"| {label} + QB-Norm, bank = first {len(bank)} Multi30K train.en captions, beta 20 (t2i) | "
                      + " | ".join(cells) + " | bank x gallery scores |", flush=True)


# ---------------------------------------------------------------------------------------------------- round 3
def ablation3(args) -> None:
    """Issue 17 round 3 (concept_round3.py): recipe variants that use the same pairs differently, 3 protocols."""
    import concept_round3 as c3
    import concept_rounds as cr

    from xmr.encoders.concept import ConceptConfig, ConceptEncoder

    enc = ConceptEncoder(ConceptConfig())
    ce = enc.class_emb
    F, C = Cached(args.flickr, enc), Cached(args.coco, enc)
    lines = [l.strip() for l in gzip.open(Path(args.multi30k) / "train.en.gz", "rt", encoding="utf-8") if l.strip()]
    bq = _embed_cached(enc, lines, Path(args.flickr).with_name(f"multi30k_bank{len(lines)}.q.npy"))
    ref = cr.Recipe(dict(features="logits", a=0.3, b=0.3, caption_ridge=10.0), [F], ce).sims(C)
    print(f"check: round-3 code with no options vs round 2's default recipe, max |diff| = "
          f"{np.abs(c3.Recipe3({}, [F], ce).sims(C) - ref).max():.2e}")
    print(f"\n### round 3 variants (EfficientNet-Lite0, multi-crop; text-only data: {len(lines)} Multi30K captions)\n"
          f"{c3.head()}")
    ref = c3.protocols3(dict(c3.DEFAULT), F, C, ce, _metrics)
    rows = c3.ROWS3 if not args.only else [r for r in c3.ROWS3 if any(o in r[0] for o in args.only)]
    for label, opts, cost in rows:
        t0 = time.perf_counter()
        res = c3.protocols3({**c3.DEFAULT, **opts}, F, C, ce, _metrics, bank_q=bq)
        print(f"| {label} | " + " | ".join(cr.fmt(res)) + f" | {c3.paired(res, ref)} | {cost} |", flush=True)
        print(f"  ({time.perf_counter() - t0:.0f} s for the row's 23 fits)", file=sys.stderr, flush=True)


def backbone_speed(args) -> None:
    """CPU time of the 6-view forward pass per image for each backbone, interleaved rounds (median)."""
    from PIL import Image

    from xmr.encoders.concept import ConceptConfig, ConceptEncoder

    files = sorted(Path(args.images).glob("*.jpg"))[: args.limit]
    ims = [Image.open(f).convert("RGB") for f in files]
    encs = {b: ConceptEncoder(ConceptConfig(backbone=b)) for b in args.backbones}
    xs = {b: e.preprocess_images(ims) for b, e in encs.items()}
    for b, e in encs.items():
        e.probabilities_from_pixels(xs[b][0])  # first call: ONNX export / session start, not timed
    res: dict[str, list] = {b: [] for b in encs}
    for _ in range(args.rounds):
        for b, e in encs.items():
            x, c0, t0 = xs[b], time.process_time(), time.perf_counter()
            for s in range(0, len(x), 8):
                e.probabilities_from_pixels(x[s : s + 8].reshape(-1, *x.shape[2:]))
            res[b].append(((time.process_time() - c0) / len(x), (time.perf_counter() - t0) / len(x)))
    for b, v in res.items():
        print(f"{b}: {1000 * np.median([c for c, _ in v]):.0f} ms CPU/image, "
              f"{1000 * np.median([w for _, w in v]):.0f} ms wall/image ({len(ims)} images x 6 views, ORT)")


# ---------------------------------------------------------------------------------------------------- build
def build_adapter(args) -> None:
    from xmr.encoders.concept import ConceptConfig, ConceptEncoder
    from xmr.encoders.concept_adapter import ASSETS

    enc = ConceptEncoder(ConceptConfig())
    sets = [Cached(p, enc) for p in args.train]
    feats = {"sqrtp": "centred sqrt class probabilities", "logits": "centred standardised view-mean logits"}
    info = {
        "method": f"ridge regression of the paired image's {feats[args.features]} (multi-crop, EfficientNet-Lite0) on "
                  "the caption's all-MiniLM-L6-v2 embedding"
                  + (f"; and of the caption embedding on the image's (ridge {args.caption_ridge})"
                     if args.caption_ridge else "") + "; docs/concept.md",
        "pairs": [{"dataset": s.spec, "images": int(len(s.pm)), "captions": int(len(s.q)),
                   "captions_sha256": hashlib.sha256("\n".join(s.texts).encode()).hexdigest()} for s in sets],
        "built_by": "python benchmarks/concept_quality.py build-adapter --name " + args.name + " --train "
                    + " ".join(Path(p).name for p in args.train)
                    + f" --features {args.features} --caption-ridge {args.caption_ridge:g}",
    }
    ad = _fit_on(sets, args.ridge, info, args.features, args.caption_ridge)
    out = ad.save(Path(args.out) if args.out else ASSETS / args.name)
    print(f"wrote {out}")


def build_querybank(args) -> None:
    """The first N lines of Multi30K's English training captions, one per line, with a provenance README."""
    src = Path(args.multi30k) / "train.en.gz"
    lines = [l.strip() for l in gzip.open(src, "rt", encoding="utf-8") if l.strip()][: args.size]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(lines)} captions from {src} (sha256 {hashlib.sha256(out.read_bytes()).hexdigest()})")


def bank_embeddings(args) -> None:
    """Ship a bundled querybank's MiniLM embeddings (float16) with the installed MiniLM's fingerprint
    (``xmr.encoders.concept_bank``): ``concept``'s default QB-Norm then encodes no bank text."""
    from xmr.encoders.concept import ConceptConfig, ConceptEncoder
    from xmr.encoders.concept_bank import write_asset
    from xmr.rescore import read_bank_texts

    texts, info = read_bank_texts(args.name)
    if info.get("kind") != "bundled":
        raise SystemExit(f"{args.name} is not a bundled querybank (src/xmr/assets/querybanks/NAME.txt)")
    enc = ConceptEncoder(ConceptConfig())
    t0 = time.perf_counter()
    emb = enc._embed(texts)  # the English MiniLM path (ONNX Runtime on CPU), as a concept text query
    npy, meta = write_asset(args.name, texts, emb, enc._text_model_dir,
                            f"python benchmarks/concept_quality.py bank-embeddings --name {args.name}")
    print(f"wrote {npy} and {meta}: {len(texts)} x 384 float16 ({time.perf_counter() - t0:.1f} s to encode)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="run the classifier once over a dataset's images")
    c.add_argument("spec")
    c.add_argument("out")
    c.add_argument("--backbone", default="lite0")
    c.add_argument("--start", type=int, default=0)
    c.add_argument("--stop", type=int, default=None)
    m = sub.add_parser("merge", help="merge cache parts (--start/--stop runs) into one file")
    m.add_argument("out")
    m.add_argument("parts", nargs="+")
    a = sub.add_parser("ablation", help="the ablation tables of docs/concept.md, from caches")
    a.add_argument("--flickr", required=True)
    a.add_argument("--coco", required=True)
    a.add_argument("--multi30k", default=None, help="multi30k folder: QB-Norm querybank of its English train captions")
    a.add_argument("--bank-size", type=int, default=5000)
    a.add_argument("--ridge", type=float, default=1.0)
    a.add_argument("--weights", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    a2 = sub.add_parser("ablation2", help="issue 17 round 2: adapter recipes, backbones, QB-Norm banks (3 protocols)")
    a2.add_argument("--flickr", required=True)
    a2.add_argument("--coco", required=True)
    a2.add_argument("--backbone", nargs=3, action="append", metavar=("NAME", "FLICKR", "COCO"),
                    help="caches of another backbone (repeatable): e.g. lite1 cache/f8k_lite1.npz cache/coco_lite1.npz")
    a2.add_argument("--multi30k", default=None)
    a2.add_argument("--bank-sizes", type=int, nargs="+", default=[5000, 1000000])
    a2.add_argument("--only", nargs="*", default=None, help="recipe rows whose label contains one of these")
    a3 = sub.add_parser("ablation3", help="issue 17 round 3: recipe variants on the same pairs (concept_round3.py)")
    a3.add_argument("--flickr", required=True)
    a3.add_argument("--coco", required=True)
    a3.add_argument("--multi30k", required=True, help="multi30k folder: its English train captions (text only)")
    a3.add_argument("--only", nargs="*", default=None, help="variant rows whose label contains one of these")
    sp = sub.add_parser("backbone-speed", help="CPU ms/image of the 6-view forward pass per backbone")
    sp.add_argument("images", help="a folder of .jpg files, e.g. ../shared/data/coco-mini/val2017")
    sp.add_argument("--limit", type=int, default=16)
    sp.add_argument("--rounds", type=int, default=3)
    sp.add_argument("--backbones", nargs="+", default=["lite0", "lite1", "lite2"])
    b = sub.add_parser("build-adapter", help="fit the bundled adapter on cached datasets")
    b.add_argument("--name", required=True)
    b.add_argument("--train", nargs="+", required=True)
    b.add_argument("--ridge", type=float, default=1.0)
    b.add_argument("--features", choices=("sqrtp", "logits"), default="logits")
    b.add_argument("--caption-ridge", type=float, default=10.0, help="image -> caption map's ridge (0: none)")
    b.add_argument("--out", default=None, help="folder (default: src/xmr/assets/concept/NAME)")
    qb = sub.add_parser("build-querybank", help="bundle a QB-Norm querybank of Multi30K English train captions")
    qb.add_argument("--multi30k", required=True)
    qb.add_argument("--size", type=int, default=5000)
    qb.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "src" / "xmr" / "assets" / "querybanks"
                                         / "multi30k-en-train-5k.txt"))
    be = sub.add_parser("bank-embeddings", help="ship a bundled querybank's MiniLM embeddings (float16) next to it")
    be.add_argument("--name", default="multi30k-en-train-5k")
    args = ap.parse_args()
    if args.cmd == "bank-embeddings":
        bank_embeddings(args)
    elif args.cmd == "build-querybank":
        build_querybank(args)
    elif args.cmd == "cache":
        cache_dataset(args.spec, args.out, args.backbone, start=args.start, stop=args.stop)
    elif args.cmd == "merge":
        merge_parts(args.parts, args.out)
    elif args.cmd == "ablation":
        ablation(args)
    elif args.cmd == "ablation2":
        ablation2(args)
    elif args.cmd == "ablation3":
        ablation3(args)
    elif args.cmd == "backbone-speed":
        backbone_speed(args)
    else:
        build_adapter(args)


if __name__ == "__main__":
    main()
