"""``xmr train-recipe``: train the hierarchical recipe tower on an index whose photos carry recipes from
``xmr index --manifest`` (:mod:`xmr.train.recipe_index`), for ``xmr search --recipe-tower DIR``."""
from __future__ import annotations

from ._common import add_index_arg, index_path, positive_int, print_json, register_command


def setup(p):
    add_index_arg(p)  # an index built with xmr index DIR --manifest recipes.jsonl
    p.add_argument("--out", required=True, metavar="DIR", help="new or empty folder: config.json, model.safetensors")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--dim", type=positive_int, default=256, help="joint space width (default 256)")
    p.add_argument("--rec-weight", type=float, default=1.0,
                   help="weight of the paper's self-supervised recipe loss (default 1, the paper's; 0: pair loss only)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of the recipes held out and evaluated with Recipe1M's protocol (default 0.2; 0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the training record as JSON")


def run(args) -> int:
    from ..errors import ConfigError
    from ..train.recipe_index import train_recipe_from_index

    if not 0 < args.lr <= 10:
        raise ConfigError(f"--lr must be in (0, 10], got {args.lr}")
    tower, metrics = train_recipe_from_index(index_path(args), args.out, epochs=args.epochs, batch_size=args.batch_size,
                                             lr=args.lr, seed=args.seed, val_fraction=args.val_fraction,
                                             config={"dim": args.dim, "rec_weight": args.rec_weight})
    if args.json:
        print_json({"out": args.out, **tower.info})
        return 0
    held = metrics.get("im2recipe")
    shown = (f"held-out image -> recipe R@1 {held['R@1']:.3f}, medR {held['medR']:.1f} over {metrics['size']}"
             if held else "no held-out recipes")
    print(f"trained the recipe tower on {tower.info['pairs']} photos with recipes ({tower.info['seconds']} s); "
          f"{shown}; saved to {args.out} (use xmr search --image dish.jpg --recipe-tower {args.out})")
    return 0


register_command("train-recipe", "train the hierarchical recipe tower on an index whose photos carry recipes",
                 setup, run)
