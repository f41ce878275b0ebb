"""``xmr eval``: benchmark an encoder on a retrieval dataset with a named protocol."""
from __future__ import annotations

import sys

from ._common import add_device_arg, add_model_arg, positive_int, print_json, progress_flag, register_command


def setup(p):
    p.add_argument("--dataset", required=True, metavar="SPEC",
                   help="e.g. coco:DIR, coco:DIR:val2017, karpathy:dataset_coco.json?split=test, manifest:FILE.jsonl, csv:DIR (docs/datasets.md)")
    add_model_arg(p)
    add_device_arg(p)
    p.add_argument("--protocol", default="standard", help="metric preset: standard (default), clip4clip, xpool, ce, vse, clip_benchmark (docs/protocols.md)")
    p.add_argument("--split", default=None, help="keep only this split (e.g. test)")
    p.add_argument("--captions", default=None, help="caption policy: all (default), first, firstN")
    p.add_argument("--limit", type=int, default=None, help="only the first N items (quick runs)")
    p.add_argument("--batch-size", type=positive_int, default=8,
                   help="images per encoder batch (default 8: peak memory about 1.5 GB with the default model, 3.9 GB at 32, no faster)")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="video datasets: frames sampled uniformly per video or moment (default: the head's "
                        "num_frames; 12 for image encoders)")
    p.add_argument("--frame-snap", type=float, default=0.0, metavar="F",
                   help="video datasets: each frame may be any frame shown within F grid steps of its target (0 = "
                        "exact, default; at most 0.5 = anywhere in its part): faster decoding, recorded in the "
                        "fingerprint")
    p.add_argument("--prefetch-workers", type=int, default=None, metavar="N",
                   help="image datasets: threads decoding the next batches while the model encodes (default: one "
                        "per core, at most 4; 0 = decode and encode in turn; same numbers either way)")
    p.add_argument("--json", action="store_true", help='print {"t2i": {...}, "i2t": {...}, "rsum", "fingerprint"}')
    xl = p.add_argument_group("cross-lingual caption retrieval (multi30k: / xtd: datasets; docs/multilingual.md)")
    xl.add_argument("--query-lang", default=None, metavar="L",
                    help="queries are the dataset's captions in L, the gallery its English captions of the same images "
                         "(R@K of each query's translation); image retrieval in L: --dataset multi30k:DIR?lang=L&root=IMAGES")
    xl.add_argument("--route", default="explicit", choices=("explicit", "detect", "english"),
                    help="how queries reach the model: explicit (lang=L, default), detect (per-query language "
                         "identification, as xmr search), english (the English tower: the floor)")
    from ._stage_args import add_fuse_arg, add_rerank_args, add_rescore_args

    mq = p.add_argument_group("multi-query retrieval")
    mq.add_argument("--queries-per-target", type=int, default=None, metavar="N",
                    help="each query is N captions of one item (consecutive captions in loader order; a remainder "
                         "shorter than N is dropped)")
    add_fuse_arg(mq)
    add_rescore_args(p)
    p.add_argument("--rescore-topk", type=int, default=None, metavar="K",
                   help="apply text->item re-scoring to each text's top-K dual candidates only (as xmr search does)")
    p.add_argument("--candidates", type=int, default=None, metavar="K",
                   help="rank texts->items with the search pipeline itself: each text's top-K candidates re-scored by "
                        "the video head (xpool, prototypes: two-stage), --rescore and --rerank exactly as xmr search "
                        "does on an index of this gallery")
    add_rerank_args(p)
    from ._composed_eval import add_composed_args

    add_composed_args(p)


def check_args(args) -> None:
    """Cheap checks on the arguments alone, before the dataset and the model load."""
    from ..errors import ConfigError

    if args.frames is not None and not 1 <= args.frames <= 1024:
        raise ConfigError("--frames must be between 1 and 1024")
    if not 0.0 <= args.frame_snap <= 0.5:  # also false for NaN
        raise ConfigError(f"--frame-snap must be between 0 and 0.5 (grid steps), got {args.frame_snap}")
    if args.prefetch_workers is not None and not 0 <= args.prefetch_workers <= 64:
        raise ConfigError(f"--prefetch-workers must be between 0 and 64, got {args.prefetch_workers}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    if args.queries_per_target is not None and args.queries_per_target < 1:
        raise ConfigError(f"--queries-per-target must be at least 1, got {args.queries_per_target}")
    if args.candidates is not None and not 1 <= args.candidates <= 10_000:
        raise ConfigError("--candidates must be between 1 and 10000")


def run(args) -> int:
    check_args(args)
    from ._composed_eval import is_composed, run_composed

    if is_composed(args.dataset):
        return run_composed(args)
    from ..data import load_dataset
    from ..encoders import create_encoder
    from ..eval import evaluate_model, format_table, list_protocols
    from ..errors import ConfigError

    if args.protocol not in list_protocols():
        raise ConfigError(f"unknown protocol {args.protocol!r}. Available: {', '.join(list_protocols())}")
    if args.query_lang is not None:
        return _run_crosslingual(args)
    stage_kw = _stage_kwargs(args)  # the stage options are checked before anything loads
    ds = load_dataset(args.dataset, split=args.split, captions=args.captions, check_media=True)
    if args.limit:
        ds = ds.subset(args.limit)
    enc = create_encoder(args.model, device=args.device)
    res = evaluate_model(ds, enc, protocol=args.protocol, batch_size=args.batch_size, show_progress=progress_flag(args),
                         num_frames=args.frames, frame_snap=args.frame_snap, prefetch_workers=args.prefetch_workers,
                         **stage_kw)
    if args.json:
        print_json(res)
        for r in res.get("rescore", []):  # the model's own re-scoring, said once where it cannot be missed
            if r.get("origin") == "model default":
                print(f"xmr eval: applied {r['summary']} to {'/'.join(r['directions'])}; --rescore none turns it "
                      "off", file=sys.stderr)
    else:
        print(f"{ds.name}: {len(ds)} items, {ds.num_texts} texts; model {enc.spec}")
        print(format_table(res))
        for line in _stage_lines(res):
            print(line)
    return 0


def _run_crosslingual(args) -> int:
    from ..data import parse_dataset_spec
    from ..encoders import create_encoder
    from ..errors import ConfigError
    from ..eval.crosslingual import crosslingual_caption_retrieval

    scheme, path, opts = parse_dataset_spec(args.dataset)
    if scheme not in ("multi30k", "xtd"):
        raise ConfigError(f"--query-lang needs a parallel-text dataset (multi30k:DIR[:SPLIT] or xtd:DIR), got {scheme}:")
    split = args.split or opts.get("split") or ("test_2016_flickr" if scheme == "multi30k" else None)
    enc = create_encoder(args.model, device=args.device)
    res = crosslingual_caption_retrieval(enc, path, query_lang=args.query_lang.strip().lower(), split=split,
                                         kind=scheme, limit=args.limit, route=args.route, protocol=args.protocol)
    if args.json:
        print_json(res)
    else:
        m = res["t2i"]
        print(f"{scheme} {split or 'test'}: {res['queries']} {res['query_lang']} queries -> English captions "
              f"(route {res['route']}); model {enc.spec}")
        print("  ".join(f"{k} {m[k]:.1f}" for k in ("R@1", "R@5", "R@10")) + f"  MdR {m['MdR']:.0f}")
    return 0


def _stage_kwargs(args) -> dict:
    """evaluate_model keywords for multi-query / re-scoring / re-ranking (empty when none is asked for)."""
    from ..errors import ConfigError
    from ._stage_args import check_rerank_args, rescore_names, rescore_params

    kw: dict = {}
    if args.queries_per_target is not None:
        kw.update(queries_per_target=args.queries_per_target, fuse=args.fuse)
    elif args.fuse != "mean-sim":
        raise ConfigError("--fuse needs --queries-per-target N")
    names = rescore_names(args)  # None: the model's own re-scoring (evaluate_model's default); []: none
    if names:
        kw.update(rescore=names, rescore_params=rescore_params(args, names), bank=args.bank,
                  rescore_topk=args.rescore_topk)
    elif args.bank:
        raise ConfigError("--bank needs --rescore (e.g. --rescore qbnorm)")
    elif names == []:
        if args.rescore_topk:
            raise ConfigError("--rescore-topk needs re-scoring: drop --rescore none")
        kw["rescore"] = "none"
    elif args.rescore_topk:
        kw["rescore_topk"] = args.rescore_topk  # with the model's own re-scoring (refused if it has none)
    if args.candidates is not None:
        if not 1 <= args.candidates <= 10_000:
            raise ConfigError("--candidates must be between 1 and 10000")
        if args.rescore_topk is not None:
            raise ConfigError("give --candidates (the search pipeline) or --rescore-topk (dense emulation), not both")
        kw["candidates"] = args.candidates
    if args.rerank:
        check_rerank_args(args)
        kw.update(rerank=args.rerank, rerank_k=args.rerank_k, rerank_alpha=args.rerank_alpha)
    return kw


def _stage_lines(res: dict) -> list[str]:
    out = []
    if "multi_query" in res:
        m = res["multi_query"]
        out.append(f"multi-query: {m['queries_per_target']} captions per query, fused by {m['fuse']}: "
                   f"{m['num_queries']} queries ({m['captions_dropped']} captions left over)")
    for r in res.get("rescore", []):
        bank = r["querybank"]
        src = f", querybank {bank['source']} ({bank['size']} queries)" if bank else ""
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        trans = f" [transductive: {', '.join(r['transductive_directions'])}]" if r["transductive"] else ""
        out.append(f"rescore: {r['step']}({params}){src}{trans}")
        if r.get("origin") == "model default":
            out.append(f"applied {r['summary']} to {'/'.join(r['directions'])}; --rescore none turns it off "
                       f"(the 'before' line is without it)")
    if "search" in res:
        s = res["search"]
        out.append(f"search pipeline: top-{s['candidates']} per text through "
                   f"{' -> '.join(['first-stage'] + [x['stage'] for x in s['stages']])} ({s['seconds']} s)")
    if "rerank" in res:
        r = res["rerank"]
        out.append(f"rerank: {r['cross_encoder']['spec']} on top-{r['k']} (alpha {r['alpha']}): "
                   f"{r['pairs_scored']} pairs in {r['cross_s']} s; t2i R@1 gain {r['t2i_gain']['R@1']:+.2f}")
    if "before" in res:
        b = res["before"]
        out.append(f"before: t2i R@1 {b['t2i']['R@1']:.2f} R@5 {b['t2i']['R@5']:.2f}   "
                   f"i2t R@1 {b['i2t']['R@1']:.2f} R@5 {b['i2t']['R@5']:.2f}")
    return out


register_command("eval", "evaluate a model on an image-text or video-text retrieval benchmark", setup, run)
