"""``xmr train-fusion``: train an expert fuser (LAFF, MMT, or the concatenation baseline) on an index built with
``--experts`` and captions of its files; ``xmr search --expert-fusion NAME:DIR`` uses it (docs/experts.md)."""
from __future__ import annotations

from ._common import add_device_arg, add_index_arg, index_path, positive_int, register_command


def setup(p):
    add_index_arg(p)  # an index built with xmr index DIR --experts NAMES
    p.add_argument("--captions", required=True, metavar="FILE",
                   help='JSON lines {"media": PATH, "caption": TEXT} (or "captions": [...]); paths relative to '
                        "the file")
    p.add_argument("--fuser", default="laff", choices=("laff", "mmt", "concat", "vtc"),
                   help="default laff; vtc: VTC's context adapter over the item's side-text rows (comments)")
    p.add_argument("--out", required=True, metavar="DIR", help="new or empty folder: config.json, model.safetensors")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=positive_int, default=None, help="fused width (default: the index's width)")
    p.add_argument("--max-rows", type=positive_int, default=4, help="rows kept per (item, expert) (default 4)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the captioned items held out and evaluated (default 0.2; 0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, metavar="JSON", help='other fuser config fields, e.g. \'{"heads": 4}\'')
    add_device_arg(p)


def run(args) -> int:
    from ..errors import ConfigError
    from ..index.snapshot import open_reader
    from ..train.fusion import FusionTrainConfig, train_from_index
    from ._common import json_object

    if not 0 <= args.val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    extra = json_object(args.config, "--config")
    if args.hidden is None:
        store, reader = open_reader(index_path(args))
        try:
            hidden = int(reader.dim or 64)
        finally:
            store.close()
    else:
        hidden = args.hidden
    cfg = FusionTrainConfig(fuser=args.fuser, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            seed=args.seed, fuser_config={"hidden": hidden, "max_rows": args.max_rows, **extra})
    _, hist, metrics = train_from_index(index_path(args), args.captions, cfg, args.out, args.val_fraction, args.device)
    shown = ", ".join(f"{k} {v}" for k, v in metrics.items()) or "no held-out items"
    print(f"trained {args.fuser} for {args.epochs} epochs (last loss {hist[-1]['loss']}); held out: {shown}; saved "
          f"to {args.out} (use xmr search --expert-fusion {args.fuser}:{args.out})")
    return 0


register_command("train-fusion", "train an expert fuser (laff, mmt, concat, vtc) on an index with experts", setup, run)
