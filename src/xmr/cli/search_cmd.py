"""``xmr search``: query an index with text or an image."""
from __future__ import annotations

from ._common import add_device_arg, add_index_arg, index_path, print_json, register_command


def setup(p):
    p.add_argument("query", nargs="*", help="text query; several quoted queries describe one target (multi-query, "
                   "fused by --fuse)")
    p.add_argument("--image", metavar="FILE", help="search with an image instead of text")
    add_index_arg(p)
    p.add_argument("--k", "-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--json", action="store_true", help='print {"query": ..., "results": [{path, score, ...}]}')
    p.add_argument("--type", dest="media_type", choices=("image", "video", "all"), default="all",
                   help="only images, only videos, or all (default); video results carry start/end seconds")
    add_device_arg(p)
    from ..rescore._cli import add_fuse_arg, add_rerank_args, add_rescore_args

    add_fuse_arg(p)
    p.add_argument("--candidates", type=int, default=None, metavar="K",
                   help="candidate pool taken from the index and re-scored exactly (default max(100, k)): with "
                        "--rescore/--rerank/several queries, and for indexes whose video head re-scores "
                        "(video:...+xpool@DIR, +prototypes@DIR)")
    add_rescore_args(p)
    add_rerank_args(p)


def run(args) -> int:
    from ..encoders import create_encoder
    from ..errors import ConfigError
    from ..index import IndexStore, search_index

    queries = list(args.query or [])
    if bool(queries) == (args.image is not None):
        raise ConfigError('give a text query or --image FILE (e.g. xmr search "a cat on a sofa")')
    if len(queries) > 1 or args.rescore or args.rerank or args.bank or args.fuse != "mean-sim":
        return _run_staged(args, queries)
    if args.candidates is not None and not 1 <= args.candidates <= 10_000:
        raise ConfigError("--candidates must be between 1 and 10000")
    args.query = queries[0] if queries else None  # one query: the plain search, unchanged output
    with IndexStore(index_path(args), readonly=False) as store:
        spec = store.model_spec
        if spec is None:
            raise ConfigError(f"index {index_path(args)} is empty; run xmr index DIR first")
        enc = create_encoder(spec, device=args.device)
        if args.candidates is not None and not getattr(enc, "keep_frames", False):
            raise ConfigError("--candidates only applies with --rescore, --rerank, several queries, or an index whose "
                              "video head re-scores (xpool, prototypes)")
        res = search_index(store, enc, text=args.query, image=args.image, k=args.k,
                           media_type=getattr(args, "media_type", None), candidates=args.candidates)
    if args.json:
        print_json({"query": args.query if args.query is not None else {"image": args.image}, "model": spec,
                    "results": [r.to_dict() for r in res]})
        return 0
    if not res:
        print("no results (the index is empty)")
    for r in res:
        span = f"  [{r.start:.1f}-{r.end:.1f} s]" if r.start is not None else ""
        print(f"{r.rank:3d}. {r.score:.4f}  {r.path}{span}")
    return 0


def _run_staged(args, queries: list[str]) -> int:
    """Several queries and/or re-scoring / re-ranking on the index's top candidates (xmr.rescore.search)."""
    from ..encoders import create_encoder
    from ..errors import ConfigError
    from ..index import IndexStore
    from ..index.search import MAX_K, results_from_ids
    from ..rescore import build_pipeline, parse_rescore_names
    from ..rescore._cli import check_rerank_args, rescore_params
    from ..rescore.search import index_querybank, staged_search

    if args.image is not None:
        raise ConfigError("--image cannot be combined with --rescore, --rerank, --fuse or several queries")
    if getattr(args, "media_type", "all") not in (None, "all"):
        raise ConfigError("--type cannot be combined with --rescore, --rerank, --fuse or several queries yet")
    if not isinstance(args.k, int) or not 1 <= args.k <= MAX_K:
        raise ConfigError(f"k must be an integer between 1 and {MAX_K}, got {args.k!r}")
    if args.candidates is not None and not 1 <= args.candidates <= MAX_K:
        raise ConfigError(f"--candidates must be between 1 and {MAX_K}")
    if args.bank and not args.rescore:
        raise ConfigError("--bank needs --rescore (e.g. --rescore qbnorm)")
    if args.fuse != "mean-sim" and len(queries) < 2:
        raise ConfigError("--fuse needs several queries")
    with IndexStore(index_path(args), readonly=False) as store:
        spec = store.model_spec
        if spec is None:
            raise ConfigError(f"index {index_path(args)} is empty; run xmr index DIR first")
        enc = create_encoder(spec, device=args.device)
        if getattr(enc, "keep_frames", False):
            raise ConfigError(f"index model {spec!r} re-scores videos with its head; --rescore, --rerank, --fuse and "
                              "several queries cannot be combined with that yet (search with one query)")
        pipe, bank_ids, reranker = None, None, None
        if args.rescore:
            names = parse_rescore_names(args.rescore)
            bank = None
            if args.bank:
                bank, bank_ids = index_querybank(store, enc, args.bank)
            pipe = build_pipeline(names, rescore_params(args, names), bank)
        if args.rerank:
            from ..rerank import create_reranker

            check_rerank_args(args)
            reranker = create_reranker(args.rerank, device=args.device)
        scores, ids = staged_search(store, enc, queries, args.k, fuse=args.fuse, pipeline=pipe, bank_ids=bank_ids,
                                    reranker=reranker, rerank_k=args.rerank_k if reranker else None,
                                    rerank_alpha=args.rerank_alpha, candidates=args.candidates)
        res = results_from_ids(store, scores[None], ids[None])
    stages = {}
    if len(queries) > 1:
        stages["fuse"] = args.fuse
    if pipe is not None:
        stages["rescore"] = pipe.records()
    if reranker is not None:
        stages["rerank"] = {"cross_encoder": reranker.spec, "k": args.rerank_k, "alpha": args.rerank_alpha}
    if args.json:
        print_json({"query": queries[0] if len(queries) == 1 else queries, "model": spec, **stages,
                    "results": [r.to_dict() for r in res]})
        return 0
    if not res:
        print("no results (the index is empty)")
    for r in res:
        print(f"{r.rank:3d}. {r.score:.4f}  {r.path}")
    return 0


register_command("search", "search an index with a text query or --image FILE", setup, run)
