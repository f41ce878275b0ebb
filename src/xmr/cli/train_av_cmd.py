"""``xmr train-av``: train Everything at Once or ECLIPSE on video files with sound and their captions
(:mod:`xmr.train.av`), for ``xmr index --model eao:DIR`` / ``eclipse:DIR``."""
from __future__ import annotations

from ._common import positive_int, print_json, register_command


def setup(p):
    p.add_argument("--model", required=True, choices=("eao", "eclipse"),
                   help="eao: Everything at Once (fusion of any subset of video, audio, text); eclipse: sparse "
                        "frames + dense audio")
    p.add_argument("--captions", required=True, metavar="FILE",
                   help='JSON lines {"media": PATH, "caption": TEXT} or "captions": [...] (the first is used), paths '
                        "relative to the file (e.g. the captions.jsonl of xmr synth videos --sound)")
    p.add_argument("--out", required=True, metavar="DIR", help="a new folder for config.json + model.safetensors")
    p.add_argument("--epochs", type=positive_int, default=40, help="epochs (default 40)")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate (default 0.002)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="clips per batch (default 32)")
    p.add_argument("--frames", type=positive_int, default=None,
                   help="frame tokens per clip (default: eao 8, eclipse 4)")
    p.add_argument("--chunks", type=positive_int, default=None,
                   help="audio tokens per clip (default: eao 8, eclipse 24)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the training record as JSON")


def run(args) -> int:
    from ..errors import ConfigError
    from ..train.av import train_av

    if not 0 < args.lr <= 10:
        raise ConfigError(f"--lr must be in (0, 10], got {args.lr}")
    _, record = train_av(args.model, args.captions, args.out, epochs=args.epochs, lr=args.lr,
                         batch_size=args.batch_size, seed=args.seed, frames=args.frames, chunks=args.chunks)
    if args.json:
        print_json({"out": args.out, **record})
    else:
        print(f"saved {args.out}: {args.model} on {record['clips']} clips, final loss {record['loss'][-1]:.3f} "
              f"({record['seconds']} s); index with xmr index DIR --model {args.model}:{args.out}")
    return 0


register_command("train-av", "train Everything at Once / ECLIPSE on videos with sound, for xmr index --model eao:DIR",
                 setup, run)
