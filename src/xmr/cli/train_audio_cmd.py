"""``xmr train-audio``: train an audio tower into a model's text space on synthetic sound events
(:mod:`xmr.train.audio_tower`), for ``xmr index --experts audio:DIR``."""
from __future__ import annotations

from ._common import positive_int, print_json, register_command


def setup(p):
    p.add_argument("--model", required=True, metavar="SPEC",
                   help="the index model whose text space the tower maps into (e.g. concept, tiny, tiny:DIR)")
    p.add_argument("--out", required=True, metavar="DIR", help="where to save config.json + model.safetensors")
    p.add_argument("--n", type=positive_int, default=400, help="synthetic sound tracks to train on (default 400)")
    p.add_argument("--epochs", type=positive_int, default=20, help="epochs (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the training record as JSON")


def run(args) -> int:
    from ..encoders import create_encoder
    from ..train.audio_tower import sound_pairs, train_audio_tower

    enc = create_encoder(args.model)
    emb, record = train_audio_tower(sound_pairs(args.n, seed=args.seed), enc, args.model, epochs=args.epochs,
                                    seed=args.seed)
    emb.save(args.out, extra={"training": {**record, "data": f"xmr.synth.sounds n={args.n} seed={args.seed}"}})
    if args.json:
        print_json({"out": args.out, **record})
    else:
        print(f"saved {args.out}: {record['captions']} sound captions, train accuracy {record['train_accuracy']:.3f} "
              f"({record['seconds']} s); index with --experts audio:{args.out} and --model {args.model}")
    return 0


register_command("train-audio", "train an audio tower (sound -> a model's text space) for xmr index --experts audio",
                 setup, run)
