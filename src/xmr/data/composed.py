"""Composed-retrieval datasets: a gallery of images and queries made of a reference image (one of the gallery's)
and a modification text, each with the gallery images that count as its target.

A spec is ``SCHEME:PATH[:SPLIT][?KEY=VALUE]`` (the retrieval datasets' form), one loader per scheme in
:data:`xmr.registries.COMPOSED_DATASETS`:

* ``edits:DIR`` -- ``xmr synth edits`` output (``images.jsonl`` + ``edits.jsonl``); splits ``train`` / ``test``;
  a query's targets are every image of the split with the target's attributes.
* ``fashion200k:DIR`` -- Fashion200k (Han et al. 2017) as the TIRG code reads it: ``labels/<cat>_<split>_detect_all
  .txt`` (``path<TAB>detection score<TAB>description``), images at ``DIR/<path>``; the gallery is every image of the
  split's label files. Test queries: ``DIR/test_queries.txt`` (TIRG's, ``source_path target_path`` per line); the
  modification text is TIRG's ``"replace W1 with W2"`` (the first word of the source description missing from the
  target's and vice versa); correct targets are every gallery image whose description equals the target's (TIRG's
  rule); the source is taken out of its own ranking. Train triplets are TIRG's: images whose descriptions differ in
  one word (the same description with one word removed), one seeded pair per image. Descriptions are cleaned as
  TIRG does (``.`` -> ``dotmark``, ``?`` -> ``questionmark``, ``&`` -> ``andmark``, ``*`` -> ``starmark``).
* ``fashioniq:DIR`` -- FashionIQ (Wu et al. 2021): ``captions/cap.<cat>.<split>.json`` (``{"candidate",
  "target", "captions": [two texts]}``), ``image_splits/split.<cat>.<split>.json`` (the gallery of that category
  and split), images at ``DIR/images/<asin>.{png,jpg,jpeg}``. Option ``categories=dress+shirt+toptee`` (default:
  every category with a captions file of the split). The query text is the two captions joined
  ``"<first> and <second>"`` (each stripped of ``.?,`` and spaces), as the common evaluation code does; each
  category is ranked against its own gallery (``group``); the reference is not taken out of the ranking.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..registries import COMPOSED_DATASETS
from .base import iter_jsonl, load_json, parse_options, require_file, split_suffix


@dataclass(frozen=True)
class ComposedQuery:
    reference: int  # gallery index of the reference image
    text: str  # the modification text
    target: int  # gallery index of the designated target (what training pulls the query towards)
    targets: tuple[int, ...]  # gallery indexes that count as correct (includes target)
    group: str = ""  # FashionIQ category: ranked against the gallery items of the same group


@dataclass
class ComposedDataset:
    name: str  # e.g. "fashioniq (val)"
    spec: str  # the spec it was loaded from
    scheme: str  # edits | fashion200k | fashioniq: also the evaluation protocol's name
    split: str
    media: list[str]  # gallery image paths (absolute)
    queries: list[ComposedQuery]
    groups: list[str] = field(default_factory=list)  # per gallery image ("" everywhere when ungrouped)
    descriptions: list[str] | None = None  # per gallery image (edits, fashion200k); None when the set has none
    exclude_reference: bool = True  # take the reference out of its own ranking (protocol rule)

    def __post_init__(self):
        if not self.groups:
            self.groups = [""] * len(self.media)
        n = len(self.media)
        for q in self.queries:
            if not (0 <= q.reference < n and 0 <= q.target < n and q.target in q.targets
                    and all(0 <= t < n for t in q.targets)):
                raise ConfigError(f"{self.name}: a query points outside the gallery of {n} images: {q}")

    def __len__(self) -> int:
        return len(self.media)

    def check_media(self) -> list[str]:
        return [p for p in self.media if not os.path.isfile(p)]


def load_composed(spec: str, split: str | None = None, *, check_media: bool = True, seed: int = 0) -> \
        ComposedDataset:
    """Load a composed dataset from ``SCHEME:PATH[:SPLIT][?options]`` (see the module docstring). ``split`` may
    also be given here (both must agree); ``seed`` draws the training triplets where the set has none fixed
    (fashion200k train). Missing image files raise ConfigError (``check_media``)."""
    from ..spec import parse_spec

    head, sep, query = str(spec).partition("?")
    options = parse_options(query, spec) if sep else {}
    scheme, arg = parse_spec(head, "composed dataset", hint="e.g. edits:DIR or fashioniq:DIR:val")
    if arg is None or scheme not in COMPOSED_DATASETS:
        raise ConfigError(f"unknown composed dataset scheme in {spec!r}. Available: "
                          f"{', '.join(COMPOSED_DATASETS.names())} (SCHEME:PATH[:SPLIT], e.g. edits:DIR:test)")
    path, suffix = split_suffix(arg)
    chosen = [s for s in (suffix, options.pop("split", None), split) if s is not None]
    if len(set(chosen)) > 1:
        raise ConfigError(f"composed dataset {spec!r}: splits {sorted(set(chosen))} disagree; give one")
    if not chosen:
        raise ConfigError(f"composed dataset {spec!r}: name a split (e.g. {scheme}:{path}:test)")
    ds = COMPOSED_DATASETS.get(scheme)(os.path.abspath(os.path.expanduser(path)), chosen[0], options, seed)
    if not ds.queries:
        raise ConfigError(f"{ds.name}: no queries in split {chosen[0]!r}")
    if check_media:
        missing = ds.check_media()
        if missing:
            raise ConfigError(f"{len(missing)} of {len(ds)} images of {ds.name} do not exist, e.g. {missing[0]}; "
                              f"check the download (docs/composed.md)")
    return ds


def _no_options(scheme: str, options: dict, allowed=()) -> None:
    extra = sorted(set(options) - set(allowed))
    if extra:
        raise ConfigError(f"{scheme}: unknown option(s) {extra}" + (f"; known: {list(allowed)}" if allowed else ""))


# ---------------------------------------------------------------------------------------------------- edits


@COMPOSED_DATASETS.register("edits", help="xmr synth edits output: synthetic shapes, one attribute changed per "
                            "query, held-out attribute pairs in test")
def _edits(root: str, split: str, options: dict, seed: int) -> ComposedDataset:
    _no_options("edits", options)
    images = [row for _, row in iter_jsonl(require_file(Path(root) / "images.jsonl", "edits images.jsonl"))]
    images = [im for im in images if im.get("split") == split]
    pos = {im["id"]: i for i, im in enumerate(images)}
    queries = []
    for where, e in iter_jsonl(require_file(Path(root) / "edits.jsonl", "edits edits.jsonl")):
        if e.get("split") != split:
            continue
        try:
            targets = tuple(pos[t] for t in e["targets"])
            queries.append(ComposedQuery(pos[e["reference"]], str(e["text"]), pos[e["target"]], targets))
        except (KeyError, TypeError):
            raise ConfigError(f"{where}: an edit names an image that is not in images.jsonl's {split} split") \
                from None
    return ComposedDataset(f"edits ({split})", f"edits:{root}:{split}", "edits", split,
                           [str(Path(root) / im["media"]) for im in images], queries,
                           descriptions=[str(im["description"]) for im in images], exclude_reference=True)


# ---------------------------------------------------------------------------------------------- fashion200k


def tirg_caption(s: str) -> str:
    """TIRG's ``caption_post_process``."""
    return (s.strip().replace(".", "dotmark").replace("?", "questionmark").replace("&", "andmark")
            .replace("*", "starmark"))


def tirg_modification(source: str, target: str) -> str:
    """TIRG's ``get_different_word``: ``"replace W1 with W2"``, W1 the first word of ``source`` not in ``target``
    (the last word when every word is), W2 likewise."""
    s, t = source.split(), target.split()
    w1 = next((w for w in s if w not in t), s[-1] if s else "")
    w2 = next((w for w in t if w not in s), t[-1] if t else "")
    return f"replace {w1} with {w2}"


def _parents(caption: str) -> set[str]:
    """The caption with one word removed, for each word (TIRG's parent captions)."""
    out = set()
    for w in caption.split():
        p = " ".join(x for x in caption.replace(w, "").split())
        out.add(p)
    return out


@COMPOSED_DATASETS.register("fashion200k", help="Fashion200k as TIRG reads it: labels/*_<split>_detect_all.txt, "
                            "test_queries.txt; R@1/10/50")
def _fashion200k(root: str, split: str, options: dict, seed: int) -> ComposedDataset:
    _no_options("fashion200k", options)
    labels = Path(root) / "labels"
    files = sorted(labels.glob(f"*_{split}_detect_all.txt")) if labels.is_dir() else []
    if not files:
        raise ConfigError(f"fashion200k {root}: no labels/*_{split}_detect_all.txt (download the dataset from "
                          f"github.com/xthan/fashion-200k; see docs/composed.md)")
    media, captions = [], []
    for f in files:
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 3:
                raise ConfigError(f"{f}, line {n}: expected path<TAB>score<TAB>description")
            media.append(parts[0].strip())
            captions.append(tirg_caption(parts[2]))
    pos = {p: i for i, p in enumerate(media)}
    by_caption: dict[str, list[int]] = {}
    for i, c in enumerate(captions):
        by_caption.setdefault(c, []).append(i)
    queries = []
    if split == "test":
        qfile = Path(root) / "test_queries.txt"
        if not qfile.is_file():
            raise ConfigError(f"fashion200k {root}: test_queries.txt is missing: the TIRG test queries "
                              f"(storage.googleapis.com/image_retrieval_css/test_queries.txt) go in the dataset folder")
        for n, line in enumerate(qfile.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[0] not in pos or parts[1] not in pos:
                raise ConfigError(f"{qfile}, line {n}: expected 'source_path target_path' of two test images")
            s, t = pos[parts[0]], pos[parts[1]]
            targets = tuple(i for i in by_caption[captions[t]] if i != s)
            queries.append(ComposedQuery(s, tirg_modification(captions[s], captions[t]), t, targets or (t,)))
    else:  # TIRG's training pairs: captions that share a parent (differ in one word)
        children: dict[str, set[str]] = {}
        for c in by_caption:
            for p in _parents(c):
                children.setdefault(p, set()).add(c)
        rng = np.random.default_rng(seed)
        for i, c in enumerate(captions):
            options_ = sorted({o for p in _parents(c) for o in children.get(p, ()) if o != c})
            if not options_:
                continue
            other = options_[int(rng.integers(len(options_)))]
            t = by_caption[other][int(rng.integers(len(by_caption[other])))]
            queries.append(ComposedQuery(i, tirg_modification(c, other), t, tuple(by_caption[other])))
    return ComposedDataset(f"fashion200k ({split})", f"fashion200k:{root}:{split}", "fashion200k", split,
                           [str(Path(root) / m) for m in media], queries, descriptions=captions,
                           exclude_reference=True)


# ----------------------------------------------------------------------------------------------- fashioniq


def join_captions(captions) -> str:
    """FashionIQ's two relative captions as one query text: ``"<first> and <second>"``."""
    parts = [str(c).strip(".?, ") for c in captions if str(c).strip(".?, ")]
    if not parts:
        raise ConfigError("a FashionIQ query has no caption text")
    return " and ".join(parts)


def _fiq_image(root: Path, asin: str) -> str:
    for ext in (".png", ".jpg", ".jpeg"):
        p = root / "images" / f"{asin}{ext}"
        if p.is_file():
            return str(p)
    return str(root / "images" / f"{asin}.png")  # reported missing by check_media


@COMPOSED_DATASETS.register("fashioniq", help="FashionIQ: captions/cap.<cat>.<split>.json, image_splits/; R@10/R@50 "
                            "per category and their mean")
def _fashioniq(root: str, split: str, options: dict, seed: int) -> ComposedDataset:
    _no_options("fashioniq", options, ("categories",))
    base = Path(root)
    if "categories" in options:
        cats = [c for c in options["categories"].replace(",", "+").split("+") if c]
    else:
        cats = sorted(p.name.split(".")[1] for p in (base / "captions").glob(f"cap.*.{split}.json"))
    if not cats:
        raise ConfigError(f"fashioniq {root}: no captions/cap.<category>.{split}.json (see docs/composed.md)")
    media, groups, queries = [], [], []
    for cat in cats:
        gallery = load_json(require_file(base / "image_splits" / f"split.{cat}.{split}.json",
                                         f"fashioniq image split {cat}/{split}"))
        rows = load_json(require_file(base / "captions" / f"cap.{cat}.{split}.json",
                                      f"fashioniq captions {cat}/{split}"))
        if not isinstance(gallery, list) or not isinstance(rows, list):
            raise ConfigError(f"fashioniq {root}: {cat}/{split} files must hold JSON lists")
        start = len(media)
        pos = {str(a): start + i for i, a in enumerate(gallery)}
        media += [_fiq_image(base, str(a)) for a in gallery]
        groups += [cat] * len(gallery)
        for n, r in enumerate(rows):
            if not isinstance(r, dict) or "target" not in r or "candidate" not in r:
                raise ConfigError(f"fashioniq cap.{cat}.{split}.json, entry {n}: needs candidate and target (the "
                                  f"test split's targets are withheld by the benchmark: evaluate on val)")
            if r["candidate"] not in pos or r["target"] not in pos:
                raise ConfigError(f"fashioniq cap.{cat}.{split}.json, entry {n}: candidate or target is not in "
                                  f"split.{cat}.{split}.json")
            t = pos[r["target"]]
            queries.append(ComposedQuery(pos[r["candidate"]], join_captions(r.get("captions") or []), t, (t,), cat))
    return ComposedDataset(f"fashioniq ({split}: {', '.join(cats)})", f"fashioniq:{root}:{split}", "fashioniq",
                           split, media, queries, groups=groups, descriptions=None, exclude_reference=False)


__all__ = ["ComposedDataset", "ComposedQuery", "join_captions", "load_composed", "tirg_caption", "tirg_modification"]
