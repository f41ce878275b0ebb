"""``xmr eval --dataset edits:DIR:test|fashion200k:DIR:test|fashioniq:DIR:val``: composed-retrieval evaluation
(reference image + modification text) with the dataset's protocol (:mod:`xmr.eval.composed`)."""
from __future__ import annotations

from ._common import print_json, progress_flag


def add_composed_args(p) -> None:
    g = p.add_argument_group("composed retrieval (--dataset edits:DIR:test, fashion200k:DIR:test, fashioniq:DIR:val)")
    g.add_argument("--composer", default=None, metavar="DIR",
                   help="a composer folder (xmr train-compose), trained on --model")
    g.add_argument("--method", default=None, choices=("image", "text", "fusion", "composer", "all"),
                   help="queries: the reference image alone, the text alone, their training-free fusion, the "
                        "composer (default with --composer), or all of them (default without: image, text, fusion)")


def is_composed(spec: str) -> bool:
    from ..registries import load_all

    scheme = str(spec).partition(":")[0]
    return scheme in load_all("composed_dataset")["composed_dataset"]


def run_composed(args) -> int:
    from ..data.composed import load_composed
    from ..encoders import create_encoder
    from ..errors import ConfigError
    from ..eval.composed import evaluate_composed

    unsupported = [f for f, v in (("--protocol", args.protocol != "standard"), ("--captions", args.captions),
                                  ("--queries-per-target", args.queries_per_target), ("--rescore", args.rescore),
                                  ("--rerank", args.rerank), ("--candidates", args.candidates),
                                  ("--frames", args.frames)) if v]
    if unsupported:
        raise ConfigError(f"{', '.join(unsupported)}: not defined for composed datasets (their protocol comes with "
                          f"the dataset: docs/composed.md)")
    if args.limit:
        raise ConfigError("--limit is not defined for composed datasets (queries point into the whole gallery)")
    method = args.method or ("composer" if args.composer else "all")
    methods = ["image", "text", "fusion"] + (["composer"] if args.composer else []) if method == "all" else [method]
    composer = None
    if "composer" in methods:
        if not args.composer:
            raise ConfigError("--method composer needs --composer DIR (xmr train-compose)")
        from ..compose import load_composer

        composer = load_composer(args.composer)
    ds = load_composed(args.dataset, args.split)
    enc = create_encoder(args.model, device=args.device)
    results = evaluate_composed(ds, enc, methods, composer, batch_size=args.batch_size,
                                show_progress=progress_flag(args))
    if args.json:
        print_json(results if len(results) > 1 else results[0])
        return 0
    print(f"{ds.name}: {len(ds)} gallery images, {len(ds.queries)} queries; model {enc.spec}; protocol {ds.scheme}")
    for r in results:
        keys = [k for k in r if k.startswith("R@") or k == "mean"]
        print(f"  {r['method']:<9} " + "  ".join(f"{k} {r[k]:6.2f}" for k in keys))
    return 0
