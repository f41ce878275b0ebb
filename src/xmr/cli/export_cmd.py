"""``xmr export --index IDX --out OUT``: an index's vectors as clip-retrieval embedding shards."""
from __future__ import annotations

from ._common import add_index_arg, index_path, print_json, register_command


def setup(p):
    add_index_arg(p)
    p.add_argument("--out", required=True, metavar="OUT", help="a new folder: img_emb/, metadata/, embed_info.json")
    p.add_argument("--shard-size", type=int, default=100_000, metavar="N", help="vectors per shard (default 100000)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float32",
                   help="stored vector type (default float32: the index's own precision)")
    p.add_argument("--json", action="store_true", help="print embed_info as JSON")


def run(args) -> int:
    from ..embed import export_index

    info = export_index(index_path(args), args.out, shard_size=args.shard_size, dtype=args.dtype)
    if args.json:
        print_json(info.to_dict())
    else:
        print(f"exported {info.count} vectors ({info.dim}-d, {info.dtype}, model {info.model!r}) from {info.source} "
              f"into {len(info.shards)} shards in {args.out}")
    return 0


register_command("export", "write an index's vectors as clip-retrieval embedding shards (img_emb/*.npy + "
                 "metadata/*.parquet)", setup, run)
