"""``xmr train-compose``: train a composer (TIRG, JVSM) on (reference image, modification text, target image)
triplets, on a frozen encoder's cached features; the output folder is what ``xmr search --composer`` and
``xmr eval --composer`` take (docs/composed.md)."""
from __future__ import annotations

from ._common import add_device_arg, positive_int, progress_flag, register_command


def setup(p):
    p.add_argument("--dataset", required=True, metavar="SPEC",
                   help="composed dataset without a split: edits:DIR (xmr synth edits), fashion200k:DIR, fashioniq:DIR")
    p.add_argument("--composer", default="tirg", help="tirg (default) or jvsm")
    p.add_argument("--model", default="concept", metavar="SPEC", help="the frozen encoder (default concept); must be "
                   "the model of the index you will search")
    p.add_argument("--out", required=True, metavar="DIR", help="new or empty folder: config.json, model.safetensors, "
                   "checkpoints/, metrics.csv, curve.png")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint (same "
                   "settings; only --epochs may grow)")
    p.add_argument("--split", default="train", help="training split (default train)")
    p.add_argument("--eval-split", default="test", help="evaluated every epoch (default test; 'none': no evaluation)")
    p.add_argument("--epochs", type=positive_int, default=20)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--hidden", type=positive_int, default=256, help="composition MLP hidden width (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, metavar="JSON",
                   help='composer config fields, e.g. \'{"semantic_weight": 0.5}\' for jvsm')
    add_device_arg(p)


def run(args) -> int:
    from ..train.compose import ComposeTrainConfig, train_composer
    from ._common import json_object

    cfg = ComposeTrainConfig(dataset=args.dataset, composer=args.composer, model=args.model, split=args.split,
                             eval_split=None if args.eval_split == "none" else args.eval_split, epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
                             hidden=args.hidden, composer_config=json_object(args.config, "--config"))
    res = train_composer(cfg, args.out, show_progress=progress_flag(args), device=args.device, resume=args.resume)
    last = res.history[-1]
    shown = ", ".join(f"{k} {last[k]}" for k in ("R@1", "R@10", "R@50", "mean") if k in last)
    base = "; ".join(f"{m} " + ", ".join(f"{k} {v[k]}" for k in ("R@1", "R@10") if k in v)
                     for m, v in res.baselines.items())
    where = f" (resumed after epoch {res.resumed_from})" if res.resumed_from else ""
    print(f"trained {cfg.composer} on {cfg.model} for {cfg.epochs} epochs{where}: {shown or 'no evaluation'}"
          + (f" (baselines: {base})" if base else "") + f"; saved to {res.out} (use --composer {res.out})")
    return 0


register_command("train-compose", "train a composer (tirg, jvsm) for composed image + text queries", setup, run)
