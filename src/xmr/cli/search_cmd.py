"""``xmr search``: query an index with text or an image."""
from __future__ import annotations

from ._common import add_device_arg, add_index_arg, index_path, print_json, register_command


def setup(p):
    p.add_argument("query", nargs="?", help="text query")
    p.add_argument("--image", metavar="FILE", help="search with an image instead of text")
    add_index_arg(p)
    p.add_argument("--k", "-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--json", action="store_true", help='print {"query": ..., "results": [{path, score, ...}]}')
    add_device_arg(p)


def run(args) -> int:
    from ..encoders import create_encoder
    from ..errors import ConfigError
    from ..index import IndexStore, search_index

    if (args.query is None) == (args.image is None):
        raise ConfigError('give a text query or --image FILE (e.g. xmr search "a cat on a sofa")')
    with IndexStore(index_path(args), readonly=False) as store:
        spec = store.model_spec
        if spec is None:
            raise ConfigError(f"index {index_path(args)} is empty; run xmr index DIR first")
        enc = create_encoder(spec, device=args.device)
        res = search_index(store, enc, text=args.query, image=args.image, k=args.k)
    if args.json:
        print_json({"query": args.query if args.query is not None else {"image": args.image}, "model": spec,
                    "results": [r.to_dict() for r in res]})
        return 0
    if not res:
        print("no results (the index is empty)")
    for r in res:
        print(f"{r.rank:3d}. {r.score:.4f}  {r.path}")
    return 0


register_command("search", "search an index with a text query or --image FILE", setup, run)
