"""``xmr search`` flags for queries that talk back: Ask&Confirm (``--ask``, ``--confirm``, ``--reject``,
``--vocab``) and relevance feedback (``--good``, ``--bad``). See docs/interactive.md."""
from __future__ import annotations

from ._common import print_json


def add_interactive_args(p) -> None:
    g = p.add_argument_group("interactive (docs/interactive.md)")
    g.add_argument("--ask", action="store_true",
                   help="Ask&Confirm: also print details the query leaves out whose answer would split the results "
                        "best; answer with --confirm / --reject")
    g.add_argument("--confirm", action="append", default=[], metavar="DETAIL",
                   help="a proposed detail the target shows (repeatable): appended to the query")
    g.add_argument("--reject", action="append", default=[], metavar="DETAIL",
                   help="a proposed detail the target does not show (repeatable): pushed down, never proposed again")
    g.add_argument("--vocab", default=None, metavar="SOURCE",
                   help="details to propose: concepts (ImageNet, default for concept models), coco (80 COCO objects, "
                        "default otherwise) or a text file with one detail per line")
    g.add_argument("--good", action="append", default=[], type=int, metavar="ID",
                   help="relevance feedback: the id of a good result (repeatable; --json shows ids); Rocchio update")
    g.add_argument("--bad", action="append", default=[], type=int, metavar="ID",
                   help="relevance feedback: the id of a bad result (repeatable)")


def interactive(args) -> bool:
    return bool(args.ask or args.confirm or args.reject or args.vocab or args.good or args.bad)


def check_interactive(args, query) -> None:
    """Refuse combinations before the model loads."""
    from ..errors import ConfigError

    if not interactive(args):
        return
    if isinstance(query, list):
        raise ConfigError("--ask / --confirm / --reject / --good / --bad take one query, not several --vector rows")
    if (args.good or args.bad) and (args.ask or args.confirm or args.reject):
        raise ConfigError("give relevance feedback (--good/--bad) or Ask&Confirm answers (--ask/--confirm/--reject), "
                          "one at a time")
    if args.vocab and not (args.ask or args.confirm or args.reject):
        raise ConfigError("--vocab needs --ask, --confirm or --reject")
    if getattr(args, "server", None):
        raise ConfigError("--ask / --confirm / --reject / --good / --bad run locally: leave out --server "
                          "or use the server's /api/ask and feedback parameters")


def run_interactive(args, pipe, reader, query):
    """(outcome, proposals or None)."""
    if args.good or args.bad:
        from ..retrieval.interactive import feedback_search

        return feedback_search(pipe, reader, query, args.k, args.media_type, args.good, args.bad), None
    from ..retrieval.interactive import AskConfirm

    ac = AskConfirm(pipe.encoder, args.vocab)
    out, props = ac.ask(pipe, reader, query, args.k, args.media_type, args.confirm, args.reject)
    out.query = {"query": query.describe(), "confirmed": list(args.confirm), "rejected": list(args.reject)}
    return out, (props if args.ask else None)


def print_interactive(out, props, args, print_results) -> int:
    if args.json:
        d = out.to_dict()
        if props is not None:
            d["proposals"] = [p.to_dict() for p in props]
        print_json(d)
        return 0
    print_results(out)
    if props is not None:
        if props:
            print("details to confirm or reject (--confirm DETAIL / --reject DETAIL):")
            for p in props:
                print(f"  {p.detail}  (p(yes) {p.p_yes:.2f}, {p.gain:.2f} bits)")
        else:
            print("no details to propose (fewer than 2 results)")
    return 0
