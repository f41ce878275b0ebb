"""``xmr train-text --method mla``: train a language acquirer (MLA's Native Language Transfer) so that text in a new
language lands where its English translation lands in the frozen MiniLM space of ``concept`` (docs/multilingual.md)."""
from __future__ import annotations

from ._common import positive_int, register_command

METHODS = ("mla",)


def setup(p):
    p.add_argument("--method", required=True, choices=METHODS, help="mla: MLA language acquirer (docs/multilingual.md)")
    p.add_argument("--lang", required=True, help="language to acquire, e.g. de (its Multi30K files must exist)")
    p.add_argument("--data", required=True, metavar="multi30k:DIR",
                   help="parallel text: multi30k:DIR ({split}.{lang}.gz aligned with {split}.en.gz)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (checkpoints, metrics.csv, curve.png; "
                   "the acquirer itself, loadable as concept+lang:LANG@DIR)")
    p.add_argument("--epochs", type=positive_int, default=4, help="rounds of --steps steps (default 4)")
    p.add_argument("--steps", type=positive_int, default=75, help="optimiser steps per round (default 75)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-size", type=positive_int, default=500, help="val lines scored after each round (default 500)")
    p.add_argument("--max-length", type=positive_int, default=48, help="tokens per sentence (default 48)")
    p.add_argument("--vocab-size", type=positive_int, default=8000, help="the language's WordPiece vocabulary")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--json", action="store_true", help="print the training summary as JSON")


def run(args) -> int:
    import json

    from ..errors import ConfigError
    from ..spec import parse_spec

    s = parse_spec(args.data, "parallel text source")
    if s.name != "multi30k" or not s.arg:
        raise ConfigError(f"--data {args.data!r}: give multi30k:DIR (the Multi30K text folder)")
    if args.lang.strip().lower() == "en":
        raise ConfigError("--lang en is the tower's own language: nothing to acquire; give e.g. --lang de")
    from ..train.mla import MLATrainConfig, train_acquirer

    cfg = MLATrainConfig(lang=args.lang.strip().lower(), epochs=args.epochs, steps_per_epoch=args.steps,
                         batch_size=args.batch_size, lr=args.lr, seed=args.seed, val_size=args.val_size,
                         max_length=args.max_length, vocab_size=args.vocab_size)
    info = train_acquirer(cfg, s.arg, args.out, resume=args.resume)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        f = info["final"]
        print(f"acquirer {cfg.lang}: {info['steps']} steps, {info['trainable_params']:,} trained parameters "
              f"(frozen tower {info['frozen_params']:,}), val {cfg.lang}->en R@1 {f['x2en_R@1']:.1f} "
              f"R@5 {f['x2en_R@5']:.1f}; saved to {args.out} (use: --model concept+lang:{cfg.lang}@{args.out})")
    return 0


register_command("train-text", "train a text-side component on parallel text: --method mla (a language acquirer)",
                 setup, run)
