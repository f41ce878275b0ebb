"""``xmr embed SOURCE --out OUT``: embedding shards (clip-retrieval layout) from a folder, a manifest, or webdataset /
parquet shards; resumable shard by shard; on Ray Data with ``--ray [ADDRESS]``."""
from __future__ import annotations

import sys

from ..paths import display_path
from ._common import add_device_arg, add_model_arg, positive_int, print_json, progress_flag, register_command

_RAY_HELP = ("run on Ray Data: no ADDRESS starts a local Ray; 'auto' joins this machine's cluster (ray start); "
             "ray://HOST:10001 connects through Ray Client (see docs/scale.md)")


def add_ray_args(p, *, what: str) -> None:
    """``--ray [ADDRESS]``, ``--workers``, ``--cpus-per-worker``, ``--gpus-per-worker`` (shared with xmr index)."""
    g = p.add_argument_group(f"Ray ({what}; needs xmr[scale])")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS", help=_RAY_HELP)
    g.add_argument("--workers", type=int, default=2, metavar="N", help="encoder actors (default 2)")
    g.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="C",
                   help="CPUs each actor reserves; torch uses as many threads (default 1)")
    g.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="G",
                   help="GPUs each actor reserves (e.g. 1, or 0.5 to share one GPU between two actors; default 0)")


def setup(p):
    p.add_argument("source", metavar="SOURCE",
                   help="a folder of images, a manifest (.jsonl), or a folder / file of webdataset (.tar) or parquet "
                        "shards as img2dataset writes them")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder (img_emb/, metadata/, embed_info.json)")
    add_model_arg(p)
    p.add_argument("--source-kind", choices=("folder", "manifest", "wds", "parquet"), default=None,
                   help="what SOURCE is (default: detected from the file name / the folder's files)")
    p.add_argument("--shard-size", type=int, default=10_000, metavar="N",
                   help="images per output shard for folders and manifests (tar / parquet shards keep theirs; "
                        "default 10000)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                   help="stored vector type (default float16, as clip-retrieval)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per encoder batch (default 8)")
    add_device_arg(p)
    add_ray_args(p, what="--workers actors each encode whole shards")
    p.add_argument("--json", action="store_true", help="print the run report as JSON")


def run(args) -> int:
    from ..embed import embed_source

    rep = embed_source(args.source, args.out, args.model, kind=args.source_kind, shard_size=args.shard_size,
                       dtype=args.dtype, batch_size=args.batch_size, device=args.device,
                       ray=args.ray is not None, address=args.ray or None, workers=args.workers,
                       cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                       show_progress=progress_flag(args))
    if args.json:
        print_json(rep.to_dict())
    else:
        print(f"embedded {args.source} into {rep.out} with model {rep.model!r}: {rep.shards} shards "
              f"({rep.resumed} already done), {rep.encoded} vectors written now, {rep.total} in total, "
              f"{len(rep.skipped)} inputs skipped, {rep.seconds:.1f} s")
        if rep.skipped:
            print(f"skipped {len(rep.skipped)}:", file=sys.stderr)
            for s in rep.skipped:
                print(f"  {display_path(s['path'])}: {s['reason']}", file=sys.stderr)
    for f in rep.failed:
        print(f"xmr: input shard {f['input']} could not be read: {f['error']}", file=sys.stderr)
    if rep.failed:
        print(f"xmr: {len(rep.failed)} input shards not embedded; fix or remove them and re-run to finish",
              file=sys.stderr)
        return 1
    return 0


register_command("embed", "embed a folder, manifest or webdataset/parquet shards into clip-retrieval embedding "
                 "shards (resumable; --ray for Ray Data)", setup, run)
