"""``xmr eval``: benchmark an encoder on a retrieval dataset with a named protocol."""
from __future__ import annotations

from ._common import add_device_arg, add_model_arg, print_json, progress_flag, register_command


def setup(p):
    p.add_argument("--dataset", required=True, metavar="SPEC",
                   help="e.g. coco:DIR, coco:DIR:val2017, karpathy:dataset_coco.json?split=test, manifest:FILE.jsonl, csv:DIR (docs/datasets.md)")
    add_model_arg(p)
    add_device_arg(p)
    p.add_argument("--protocol", default="standard", help="metric preset: standard (default), clip4clip, xpool, ce, vse, clip_benchmark (docs/protocols.md)")
    p.add_argument("--split", default=None, help="keep only this split (e.g. test)")
    p.add_argument("--captions", default=None, help="caption policy: all (default), first, firstN")
    p.add_argument("--limit", type=int, default=None, help="only the first N items (quick runs)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true", help='print {"t2i": {...}, "i2t": {...}, "rsum", "fingerprint"}')


def run(args) -> int:
    from ..data import load_dataset
    from ..encoders import create_encoder
    from ..eval import evaluate_model, format_table, list_protocols
    from ..errors import ConfigError

    if args.protocol not in list_protocols():
        raise ConfigError(f"unknown protocol {args.protocol!r}. Available: {', '.join(list_protocols())}")
    ds = load_dataset(args.dataset, split=args.split, captions=args.captions, check_media=True)
    if args.limit:
        ds = ds.subset(args.limit)
    enc = create_encoder(args.model, device=args.device)
    res = evaluate_model(ds, enc, protocol=args.protocol, batch_size=args.batch_size, show_progress=progress_flag(args))
    if args.json:
        print_json(res)
    else:
        print(f"{ds.name}: {len(ds)} items, {ds.num_texts} texts; model {enc.spec}")
        print(format_table(res))
    return 0


register_command("eval", "evaluate a model on an image-text retrieval benchmark", setup, run)
