"""Command-line options shared by ``xmr eval``, ``xmr search`` and ``xmr serve`` for re-scoring, multi-query and
re-ranking, and their conversion to typed options (:class:`xmr.retrieval.SearchOptions`)."""
from __future__ import annotations

import argparse

from ..errors import ConfigError


def add_rescore_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("re-scoring (docs/rescoring.md)")
    g.add_argument("--rescore", metavar="METHODS", default=None,
                   help="comma-separated re-scorers applied in this order: qbnorm, dsl, csls (e.g. qbnorm,dsl); "
                        "'none': no re-scoring. Default: the model's own for text queries (concept: qbnorm with "
                        "the bundled bank multi30k-en-train-5k; other models: none)")
    g.add_argument("--bank", metavar="SPEC_OR_FILE", default=None,
                   help="querybank: a dataset spec (its training captions, e.g. coco:DIR:train2017), a text file "
                        "with one query per line, or a bundled bank's name (multi30k-en-train-5k). Required by "
                        "qbnorm; makes dsl/csls non-transductive")
    g.add_argument("--beta", type=float, default=20.0, help="qbnorm: inverse temperature (default 20)")
    g.add_argument("--bank-k", type=int, default=1, help="qbnorm: top-k of each bank query forming the activation "
                                                          "set (default 1)")
    g.add_argument("--qb-mode", choices=("dynamic", "inverted"), default="dynamic",
                   help="qbnorm: dynamic inverted softmax (default) or plain inverted softmax on every query")
    g.add_argument("--dsl-temperature", type=float, default=1.0,
                   help="dsl: softmax temperature (default 1; CAMoE's x100 scale is 0.01)")
    g.add_argument("--csls-k", type=int, default=10, help="csls: neighbours averaged (default 10)")


def add_rerank_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("two-stage re-ranking")
    g.add_argument("--rerank", metavar="SPEC", default=None,
                   help="cross-encoder for the top candidates: hf:<BLIP ITM dir> or xattn:<trained matcher dir>")
    g.add_argument("--rerank-k", type=int, default=10, help="candidates re-scored per query (default 10)")
    g.add_argument("--rerank-alpha", type=float, default=0.0,
                   help="final score = alpha * dual + (1 - alpha) * cross (default 0: cross-encoder only)")


def add_fuse_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fuse", default="mean-sim", metavar="METHOD",
                   help="multi-query fusion: mean-sim (default), mean-emb, max, learned:DIR")


def add_expert_args(p: argparse.ArgumentParser, phrase: bool = True) -> None:
    """``--experts``, ``--expert-fusion``, ``--expert-weight`` (``xmr search``, ``xmr serve``) and ``--phrase``."""
    e = p.add_argument_group("experts (indexes built with xmr index --experts; docs/experts.md)")
    if phrase:
        e.add_argument("--phrase", default=None, metavar="TEXT",
                       help='only items whose expert text (OCR, sidecar, subtitles) holds TEXT as whole words, any '
                            'case; a double-quoted part of the query ("EXIT" sign) does the same on such an index')
    e.add_argument("--experts", dest="use_experts", default=None, metavar="NAMES",
                   help="experts to score (comma-separated), or 'none' for the visual score alone (default: every "
                        "expert the index carries)")
    e.add_argument("--expert-fusion", default="vista", metavar="RULE",
                   help="how expert scores join the visual one: vista (default: cosine to the visual embedding "
                        "plus the best expert embeddings), max, sum, or a trained fuser laff:DIR / mmt:DIR / vtc:DIR "
                        "(xmr train-fusion)")
    e.add_argument("--expert-weight", action="append", default=[], metavar="NAME=W",
                   help="weight of one expert in the fusion (default 1; repeatable)")
    e.add_argument("--recipe-tower", default=None, metavar="DIR",
                   help="a hierarchical recipe tower (xmr train-recipe) on an index whose photos got their recipes "
                        "from xmr index --manifest: an image query finds its recipe's photo, a text query (a dish "
                        "name) the photos; replaces the experts stage")


def expert_weights(args) -> dict[str, float]:
    """``--expert-weight NAME=W`` (repeatable) as ``{name: weight}``; ConfigError for a malformed one."""
    weights = {}
    for w in getattr(args, "expert_weight", []) or []:
        name, sep, val = w.partition("=")
        try:
            weights[name.strip()] = float(val)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--expert-weight takes NAME=NUMBER (e.g. ocr=0.5), got {w!r}")
    return weights


def serve_expert_options(args, options):
    """``(options, use_experts)`` for ``xmr serve``: ``--experts none`` -> no experts stage (False); names, a fusion
    rule or weights -> the experts stage with them (an index without experts is refused when the app is built);
    nothing given -> ``options`` unchanged and the server runs every expert the index carries."""
    import dataclasses

    names = getattr(args, "use_experts", None)
    fusion = getattr(args, "expert_fusion", "vista")
    weights = expert_weights(args)
    if getattr(args, "recipe_tower", None) is not None:
        check_recipe_args(args)
        return dataclasses.replace(options, recipe_tower=args.recipe_tower), False
    if names == "none":
        if fusion != "vista" or weights:
            raise ConfigError("--expert-fusion / --expert-weight need the experts stage: drop --experts none")
        return options, False
    if names is None and fusion == "vista" and not weights:
        return options, True
    chosen = tuple(n.strip() for n in names.split(",") if n.strip()) if names else ()
    return dataclasses.replace(options, experts=chosen, expert_fusion=fusion, expert_weights=weights), True


def check_recipe_args(args) -> None:
    """--recipe-tower scores every item itself: refused with the experts stage's options."""
    if getattr(args, "recipe_tower", None) is None:
        return
    given = [f for f, v in (("--experts", getattr(args, "use_experts", None)),
                            ("--expert-fusion", getattr(args, "expert_fusion", "vista") != "vista" or None),
                            ("--expert-weight", getattr(args, "expert_weight", None) or None),
                            ("--phrase", getattr(args, "phrase", None))) if v]
    if given:
        raise ConfigError(f"--recipe-tower scores every item with the tower; drop {', '.join(given)} (the experts "
                          "stage does not run with it)")


def rescore_names(args) -> list[str] | None:
    """``--rescore``: None when not given (the model's default applies), [] for ``none``, else the names. A
    parameter flag (``--beta``, ``--bank-k``, ...) without ``--rescore`` is refused: it would be silently ignored."""
    from ..rescore import parse_rescore_names

    text = getattr(args, "rescore", None)
    if text is None:
        changed = [f for f, d, v in (("--beta", 20.0, getattr(args, "beta", 20.0)),
                                     ("--bank-k", 1, getattr(args, "bank_k", 1)),
                                     ("--qb-mode", "dynamic", getattr(args, "qb_mode", "dynamic")),
                                     ("--dsl-temperature", 1.0, getattr(args, "dsl_temperature", 1.0)),
                                     ("--csls-k", 10, getattr(args, "csls_k", 10))) if v != d]
        if changed:
            raise ConfigError(f"{', '.join(changed)} {'needs' if len(changed) == 1 else 'need'} --rescore naming the "
                              "re-scorer (e.g. --rescore qbnorm --bank multi30k-en-train-5k: the default model's own "
                              "bank, with your parameters)")
        return None
    if text.strip().lower() == "none":
        if getattr(args, "bank", None):
            raise ConfigError("--bank needs re-scoring: drop --rescore none (or --bank)")
        return []
    return parse_rescore_names(text)


def rescore_params(args, names: list[str]) -> dict[str, dict]:
    """Per-method parameters from the options, for the methods in ``names`` only."""
    all_params = {"qbnorm": {"beta": args.beta, "k": args.bank_k, "mode": args.qb_mode},
                  "dsl": {"temperature": args.dsl_temperature}, "csls": {"k": args.csls_k}}
    return {n: all_params[n] for n in names if n in all_params}


def check_rerank_args(args) -> None:
    if args.rerank_k < 1:
        raise ConfigError(f"--rerank-k must be at least 1, got {args.rerank_k}")
    if not 0.0 <= args.rerank_alpha <= 1.0:
        raise ConfigError(f"--rerank-alpha must be in [0, 1], got {args.rerank_alpha}")


def search_options(args):
    """:class:`xmr.retrieval.SearchOptions` from the re-scoring / re-ranking / candidate options."""
    from ..retrieval import SearchOptions

    if getattr(args, "candidates", None) is not None:
        from ..retrieval.first_stage import check_k

        check_k(args.candidates, "--candidates")  # named as the user typed it
    names = rescore_names(args)
    if args.bank and not names:
        raise ConfigError("--bank needs --rescore (e.g. --rescore qbnorm)")
    if args.rerank:
        check_rerank_args(args)
    return SearchOptions(candidates=getattr(args, "candidates", None),
                         rescore=None if names is None else tuple(names),
                         rescore_params=rescore_params(args, names or []), bank=args.bank, rerank=args.rerank,
                         rerank_k=args.rerank_k if args.rerank else 10,
                         rerank_alpha=args.rerank_alpha if args.rerank else 0.0, device=getattr(args, "device", None))
