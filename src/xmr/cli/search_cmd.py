"""``xmr search``: query an index with text, several texts, an image, an image plus text, or a vector."""
from __future__ import annotations

from ..paths import display_path
from ._common import add_device_arg, add_index_arg, index_path, print_json, register_command
from ._interactive_args import add_interactive_args, check_interactive, interactive, print_interactive, run_interactive
from ._stage_args import (add_expert_args, add_fuse_arg, add_rerank_args, add_rescore_args, check_recipe_args,
                          expert_weights, search_options)


def setup(p):
    p.add_argument("query", nargs="*", help="text query; several quoted queries describe one target (multi-query, "
                   "fused by --fuse); with --image, texts that modify the image (composed query)")
    p.add_argument("--image", metavar="FILE", help="search with an image (add texts to modify it)")
    p.add_argument("--composer", metavar="DIR", default=None,
                   help="with --image and text: compose them with this trained composer (xmr train-compose: tirg, "
                        "jvsm; trained on the index's model) instead of the training-free fusion (docs/composed.md)")
    p.add_argument("--keep-reference", action="store_true",
                   help="with --image and text (a composed query): keep the reference image in the results (by "
                        "default it is left out when indexed, as the Fashion200k / FashionIQ protocols do)")
    p.add_argument("--vector", metavar="FILE.npy",
                   help="search with raw query vectors of the index model's width: shape (D,) or (1, D) for one "
                        "query, (N, D) for N queries searched one by one (--json: one result list per row)")
    p.add_argument("--not", dest="negatives", action="append", default=[], metavar="TEXT",
                   help="negative text term (repeatable): results similar to it are pushed down")
    p.add_argument("--weights", default=None, metavar="W1,W2,...",
                   help="weights of the positional text queries, in order (default 1 each)")
    add_index_arg(p)
    p.add_argument("--k", "-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--json", action="store_true", help='print {"query", "model", "stages", "results": [...]}')
    p.add_argument("--type", dest="media_type", choices=("image", "video", "moment", "all"), default="all",
                   help="only images, only videos, or all (default); video results carry start/end seconds. "
                        "moment: moments ranked across the corpus, several per video (docs/moments.md)")
    p.add_argument("--moment-model", default=None, metavar="DIR",
                   help="with --type moment: a trained SQuiDNet checkpoint localises the moments (default: "
                        "training-free proposals over the index's segments)")
    add_device_arg(p)
    add_fuse_arg(p)
    p.add_argument("--candidates", type=int, default=None, metavar="K",
                   help="candidate pool taken from the index and re-scored exactly (default max(100, k)): with "
                        "--rescore/--rerank, and for indexes whose video head re-scores (video:...+xpool@DIR, "
                        "+prototypes@DIR)")
    add_rescore_args(p)
    add_rerank_args(p)
    p.add_argument("--lang", default=None, metavar="CODE",
                   help="language of the text query (en, or one the model acquired: de, fr, cs for concept); "
                        "default: detected per text (reported in --json as 'languages')")
    add_expert_args(p)
    p.add_argument("--server", default=None, metavar="URL",
                   help="send the text search to a running `xmr serve` at URL (e.g. http://127.0.0.1:8000), which "
                        "has its model loaded already (default: $XMR_SERVER if set, else search here)")
    add_interactive_args(p)


def build_query(args):
    """A :class:`xmr.retrieval.Query` from the positional texts, --image, --vector, --not, --weights, --fuse; a list
    of single-vector queries when --vector holds several rows."""
    from ..errors import ConfigError
    from ..retrieval import Query, Term

    texts = list(args.query or [])
    if not texts and getattr(args, "phrase", None) and args.image is None and args.vector is None:
        texts = [args.phrase]  # --phrase alone: the phrase is also the semantic query
    kinds = sum(x is not None for x in (args.image, args.vector))
    if kinds > 1:
        raise ConfigError("give --image or --vector, not both")
    if not texts and not kinds:
        raise ConfigError('give a text query, --image FILE or --vector FILE.npy (e.g. xmr search "a cat on a sofa")')
    weights = None
    if args.weights is not None:
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights must be comma-separated numbers, got {args.weights!r}") from None
        if len(weights) != len(texts):
            raise ConfigError(f"--weights gives {len(weights)} weights for {len(texts)} text queries")
    terms = []
    if args.image is not None:
        terms.append(Term("image", args.image))
    if args.vector is not None:
        rows = _load_vectors(args.vector)
        if len(rows) > 1:
            if texts or args.image is not None or args.negatives:
                raise ConfigError(f"--vector {args.vector} holds {len(rows)} query vectors: search them alone (no "
                                  f"texts, --image or --not), or give one vector")
            return [Query((Term("vector", r),), args.fuse) for r in rows]
        terms.append(Term("vector", rows[0]))
    terms += [Term("text", t, w) for t, w in zip(texts, weights or [1.0] * len(texts))]
    terms += [Term("text", t, -1.0) for t in args.negatives]
    if args.fuse != "mean-sim" and len(terms) < 2:
        raise ConfigError("--fuse needs several queries")
    if getattr(args, "composer", None) is not None and (args.image is None or not texts):
        raise ConfigError('--composer composes an image with text: give --image FILE and the modification, e.g. '
                          'xmr search --image a.jpg "in red" --composer DIR')
    return Query(tuple(terms), args.fuse, getattr(args, "composer", None), lang=getattr(args, "lang", None))


def _load_vectors(path: str):
    """(N, D) query vectors from a .npy of shape (D,) or (N, D)."""
    import numpy as np

    from ..errors import ConfigError

    try:
        v = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ConfigError(f"--vector {path}: not a readable .npy array ({e})") from None
    if v.dtype.kind not in "fiu" or v.size == 0 or v.ndim > 2 or (v.ndim == 2 and 0 in v.shape):
        raise ConfigError(f"--vector {path}: expected a vector (D,) or vectors (N, D) of numbers, got shape "
                          f"{v.shape} dtype {v.dtype}")
    return v.reshape(1, -1) if v.ndim == 1 else v


def check_args(args) -> None:
    """Refuse file arguments that cannot work before the model loads (a model load takes seconds). ``k``, the query,
    the stages and the index are checked by the code that builds them, which also runs before the model loads and
    imports no torch."""
    import os

    from ..errors import ConfigError

    if getattr(args, "keep_reference", False) and (args.image is None or not any(t.strip() for t in args.query)):
        raise ConfigError('--keep-reference is for composed queries: give --image FILE and the modification text')
    composer = getattr(args, "composer", None)
    if composer is not None and not os.path.isdir(composer):
        raise ConfigError(f"--composer {composer}: no such folder (train one with xmr train-compose --out DIR)")
    for flag, f in (("--image", args.image), ("--vector", args.vector)):
        if f is None:
            continue
        if not os.path.exists(f):
            raise ConfigError(f"{flag} {f}: no such file")
        if not os.path.isfile(f):
            raise ConfigError(f"{flag} {f}: not a file")
        if not os.access(f, os.R_OK):
            raise ConfigError(f"{flag} {f}: not readable (permission denied)")


def run(args) -> int:
    import sys
    import time

    from ..errors import ConfigError
    from ..index.snapshot import open_reader
    from ..retrieval import build_pipeline
    from ..retrieval.first_stage import check_k

    check_k(args.k, "--k")
    from ._remote import remote_search, server_url

    url = server_url(args) if not interactive(args) else None
    if url is not None and args.media_type == "moment":
        raise ConfigError("--type moment runs here, not on a server: drop --server (or unset XMR_SERVER)")
    if url is not None:
        return _print_remote(remote_search(url, args), args)
    check_args(args)
    query = build_query(args)
    check_interactive(args, query)
    options = search_options(args)
    store, reader = open_reader(index_path(args))  # read-only: a search never writes to the index
    queries = query if isinstance(query, list) else [query]
    try:
        options = expert_options(args, options, reader.expert_names(), queries)
        spec = reader.model_spec
        if spec is None:
            raise ConfigError(f"index {index_path(args)} is empty; run xmr index DIR first")
        t0 = time.perf_counter()
        enc = _encoder(spec, reader, queries, args)
        if args.media_type == "moment":
            if interactive(args):
                raise ConfigError("--type moment ranks moments; it has no interactive mode")
            outs = _moment_search(reader, enc, queries, args, options)
            t1 = time.perf_counter()
        else:
            if getattr(args, "moment_model", None) is not None:
                raise ConfigError("--moment-model needs --type moment")
            pipe = build_pipeline(enc, options)
            t1 = time.perf_counter()
            if interactive(args):
                out, props = run_interactive(args, pipe, reader, query)
                return print_interactive(out, props, args, lambda o: _print_results(o, reader))
            drop = _reference_ids(reader, args)
            outs = [pipe.search(reader, q, args.k, args.media_type, exclude=drop) for q in queries]
        t2 = time.perf_counter()
    finally:
        store.close()
    if getattr(args, "verbose", 0):
        print(timing_line(t1 - t0, t2 - t1, outs[0].seconds), file=sys.stderr)
    if isinstance(query, list):  # several query vectors: one result list per row
        if args.json:
            d = outs[0].to_dict()
            print_json({"queries": len(outs), "model": d["model"], "stages": d["stages"],
                        "results": [[r.to_dict() for r in o.results] for o in outs]})
            return 0
        for n, o in enumerate(outs):
            print(f"query {n}:")
            _print_results(o, reader)
        return 0
    out = outs[0]
    if args.json:
        d = out.to_dict()
        for s in out.stages:  # the keys of earlier versions, kept for scripts that read them
            if s["stage"] == "rescore" and s.get("applied", True):
                d["rescore"] = s["steps"]
            elif s["stage"] == "rerank":
                d["rerank"] = {k: s[k] for k in ("cross_encoder", "k", "alpha")}
        if len(query.terms) > 1:
            d["fuse"] = query.fuse
        texts = [t.value for t in query.terms if t.kind == "text"]
        if texts and len(enc.capabilities.languages) > 1:  # a multilingual model: which text tower each text
            # went through, and how that was decided (docs/multilingual.md)
            d["languages"] = enc.text_languages(texts, query.lang)
        from ..retrieval.uncertainty import search_uncertainty

        u = search_uncertainty(enc, query, out.results)  # a PCME model: query and result uncertainty
        if u is not None:
            for r in d["results"]:
                r["uncertainty"] = u["results"][r["id"]]
            d["uncertainty"] = {k: v for k, v in u.items() if k != "results"}
        print_json({k: d[k] for k in ("query", "model", *(k for k in d if k not in ("query", "model", "results")),
                                      "results")})
        return 0
    _print_results(out, reader)
    note = rescore_note(out.stages)
    if note:
        print(note, file=sys.stderr)
    return 0


def rescore_note(stages: list[dict]) -> str | None:
    """``re-scored: qbnorm (model default, bank multi30k-en-train-5k); --rescore none turns it off`` when the model's
    own re-scoring changed this search (plain output; --json carries it in "stages")."""
    for s in stages:
        if s.get("stage") == "rescore" and s.get("origin") == "model default" and s.get("applied"):
            return f"re-scored: {s['summary']}; --rescore none turns it off"
    return None


def _reference_ids(reader, args) -> list[int]:
    """A composed query's reference image (``--image`` with text) as indexed items (same path or same content),
    left out of the results unless ``--keep-reference``: the target is a changed image, never the reference."""
    if args.image is None or not any(t.strip() for t in args.query) or getattr(args, "keep_reference", False):
        return []
    return reader.items_with_file(args.image)


def expert_options(args, options, carried: list[str], queries):
    """``options`` with the experts stage: on an index that carries experts (unless ``--experts none``), with
    ``--phrase`` or a double-quoted part of a text query as the phrase."""
    import dataclasses
    import re

    from ..errors import ConfigError

    names = getattr(args, "use_experts", None)
    phrase = getattr(args, "phrase", None)
    weights = expert_weights(args)
    if getattr(args, "recipe_tower", None) is not None:  # the tower scores every item: no experts stage
        check_recipe_args(args)
        if getattr(args, "media_type", None) == "moment":
            raise ConfigError("--recipe-tower does not rank moments: drop --type moment")
        return dataclasses.replace(options, recipe_tower=args.recipe_tower)
    if getattr(args, "media_type", None) == "moment":  # moments are ranked from video features, not experts
        if phrase or names not in (None, "none"):
            raise ConfigError("--type moment ranks moments from the videos' features: --phrase and --experts do "
                              "not apply to it")
        return options
    if names == "none":
        if phrase:
            raise ConfigError("--phrase searches the experts' text: drop --experts none")
        return options
    if not carried and phrase is None and names is None:
        fusion = getattr(args, "expert_fusion", "vista")
        if fusion != "vista" or weights:
            raise ConfigError(f"{'--expert-fusion' if fusion != 'vista' else '--expert-weight'} applies to an index "
                              "built with --experts, and this one carries none (xmr index DIR --experts NAMES)")
        return options  # an index without experts searches exactly as before
    if phrase is None and len(queries) == 1:
        quoted = [m for t in queries[0].terms if t.kind == "text" and isinstance(t.value, str)
                  for m in re.findall(r'"([^"]+)"', t.value)]
        phrase = quoted[0] if quoted else None
    chosen = tuple(n.strip() for n in names.split(",") if n.strip()) if names else ()
    return dataclasses.replace(options, experts=chosen, expert_fusion=getattr(args, "expert_fusion", "vista"),
                               expert_weights=weights, phrase=phrase)


def _print_results(out, reader) -> None:
    if not out.results:
        print("no results (the index is empty)" if not reader.count() else "no results")
    for r in out.results:
        span = f"  [{r.start:.1f}-{r.end:.1f} s]" if r.start is not None else ""
        print(f"{r.rank:3d}. {r.score:.4f}  {display_path(r.path)}{span}")
        if r.experts and r.match in r.experts:
            m = r.experts[r.match]
            text = m["text"] if len(m["text"]) <= 100 else m["text"][:97] + "..."
            print(f"       {r.match} ({m['field']}, {m['score']:.3f}): {text!r}")


def _moment_search(reader, enc, queries, args, options):
    import dataclasses

    from ..errors import ConfigError
    from ..retrieval import SearchOptions
    from ..retrieval.moment_search import search_moments

    plain = SearchOptions(device=options.device)  # moments take no stages; --rescore none asks for none anyway
    if options not in (plain, dataclasses.replace(plain, rescore=())) or args.candidates is not None:
        raise ConfigError("--type moment ranks moments itself: it takes no --rescore / --rerank / --candidates "
                          "(and the model's default re-scoring does not apply to moments)")
    model = None
    if getattr(args, "moment_model", None) is not None:
        from ..localize.squidnet import SQuiDNet

        model = SQuiDNet.load(args.moment_model)
    return [search_moments(reader, enc, q, args.k, model=model) for q in queries]


def _encoder(spec: str, reader, queries, args):
    """The index's encoder; for an index of imported vectors without a model (``external``), none: vector queries
    only."""
    from ..encoders import create_encoder
    from ..errors import ConfigError
    from ..index.embeddings_io import EXTERNAL_SPEC

    if spec != EXTERNAL_SPEC:
        return create_encoder(spec, device=args.device)
    if any(t.kind != "vector" for q in queries for t in q.terms):
        raise ConfigError(f"index {reader.path} holds vectors imported without a model (xmr index --from-embeddings "
                          f"without --model): search it with --vector Q.npy, or re-import with --model SPEC")
    from ..retrieval import _VectorOnly

    return _VectorOnly(reader)


def _print_remote(d: dict, args) -> int:
    """The server's answer, printed as a local search prints (paths as the server reports them)."""
    if args.json:
        print_json(d)
        return 0
    if not d.get("results"):
        print("no results")
    for r in d.get("results", []):
        span = f"  [{r['start']:.1f}-{r['end']:.1f} s]" if r.get("start") is not None else ""
        print(f"{r['rank']:3d}. {r['score']:.4f}  {r['path']}{span}")
    return 0


def timing_line(load_s: float, total_s: float, stages: dict) -> str:
    """``timing: load model 9.8 s, encode query 0.05 s, first-stage 0.001 s, moments 0.000 s`` (-v). The query's
    encoding is the search's time outside its stages."""
    encode = max(total_s - sum(stages.values()), 0.0)
    parts = [f"load model {load_s:.1f} s", f"encode query {encode:.3f} s"]
    parts += [f"{name} {sec:.3f} s" for name, sec in stages.items()]
    return "timing: " + ", ".join(parts)


register_command("search", "search an index with text, several texts, an image (+ text) or a vector", setup, run)
