"""``xmr train-moments``: train SQuiDNet (:func:`xmr.train.moments.train_squidnet`) on a moment dataset
(``moments:DIR`` from ``xmr synth moments``, or ``tvr:DIR`` with clip features); the output folder is what
``xmr search --type moment --moment-model`` and ``xmr serve --moment-model`` take (docs/moments.md)."""
from __future__ import annotations

from ._common import add_device_arg, positive_int, register_command


def setup(p):
    p.add_argument("--dataset", required=True, metavar="SPEC",
                   help="moments:DIR (train.npz / test.npz, xmr synth moments) or tvr:DIR (tvr_*_release.jsonl + "
                        "features/<vid_name>.npy)")
    p.add_argument("--out", required=True, metavar="DIR", help="new or empty folder: checkpoints/, config.json, "
                   "model.safetensors, metrics.csv, curve.png")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(same settings; only --epochs may grow)")
    p.add_argument("--split", default=None, help="training split (default train)")
    p.add_argument("--eval-split", default=None, help="evaluated every epoch (default test for moments:, val for "
                   "tvr:; 'none': no evaluation)")
    p.add_argument("--model", default="concept", metavar="SPEC", help="tvr: the text encoder of the descriptions "
                   "(its width must be the features'; default concept)")
    p.add_argument("--clip-seconds", type=float, default=1.5, help="tvr: seconds per feature clip (default 1.5)")
    p.add_argument("--epochs", type=positive_int, default=20)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden", type=positive_int, default=64, help="width inside both branches (default 64)")
    p.add_argument("--max-moment", type=positive_int, default=12, help="longest predicted moment in clips")
    p.add_argument("--no-debias", action="store_true", help="plain NMR training (no selective debiasing)")
    p.add_argument("--seed", type=int, default=0)
    add_device_arg(p)


def run(args) -> int:
    from ..errors import ConfigError
    from ..train.moment_data import load_moment_data
    from ..train.moments import MomentTrainConfig, train_squidnet

    if not args.lr > 0:
        raise ConfigError(f"--lr must be > 0, got {args.lr}")
    tvr = args.dataset.startswith("tvr:")
    enc = None
    if tvr:
        from ..encoders import create_encoder

        enc = create_encoder(args.model, device=args.device)
    split = args.split or "train"
    ev_split = args.eval_split or ("val" if tvr else "test")
    vocab = ({}, {})
    train = load_moment_data(args.dataset, split, encoder=enc, clip_seconds=args.clip_seconds, vocab=vocab)
    ev = None if ev_split == "none" else load_moment_data(args.dataset, ev_split, encoder=enc,
                                                           clip_seconds=args.clip_seconds, vocab=vocab)
    tc = MomentTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, debias=not args.no_debias,
                           seed=args.seed)
    model_cfg = {"hidden": args.hidden, "max_moment": args.max_moment, "seed": args.seed}
    _, history = train_squidnet(train, model_cfg, tc, out=args.out, resume=args.resume, eval_data=ev)
    last = history[-1] if history else {}
    shown = ", ".join(f"{k} {last[k]:.2f}" for k in ("VCMR_0.5-r1", "VCMR_0.7-r1", "SVMR_0.5-r1") if k in last)
    print(f"trained SQuiDNet on {args.dataset} ({len(train.queries)} queries) for {tc.epochs} epochs: "
          f"loss {last.get('loss', float('nan')):.4f}" + (f", {shown}" if shown else "")
          + f"; saved to {args.out} (use --moment-model {args.out})")
    return 0


register_command("train-moments", "train SQuiDNet for moment search (moments:DIR from xmr synth moments, tvr:DIR)",
                 setup, run)
