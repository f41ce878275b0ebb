"""``xmr train-reranker``: train a token-level re-ranker (xattn, imram, wcgl) on a frozen token encoder.

Hard negatives come from the dual encoder's top-k (``--dual``, default the token encoder itself); epoch checkpoints
and ``metrics.csv`` go into ``--out`` (``--resume`` continues a run). The folder loads as ``--rerank NAME:OUT``."""
from __future__ import annotations

from ._common import add_device_arg, json_object, positive_int, register_command


def setup(p):
    p.add_argument("--dataset", required=True, metavar="SPEC", help="image-caption dataset, e.g. coco:DIR or "
                   "manifest:DIR/captions.jsonl")
    p.add_argument("--split", default="train", help="split to train on (default train; 'all' for every item)")
    p.add_argument("--matcher", required=True, help="xattn, imram or wcgl")
    p.add_argument("--encoder", default="tiny", metavar="SPEC",
                   help="frozen token encoder (tiny, tiny:DIR, trained:DIR of a tiny model; default tiny)")
    p.add_argument("--dual", default=None, metavar="SPEC",
                   help="dual encoder whose top-k gives the hard negatives (default: --encoder)")
    p.add_argument("--out", required=True, metavar="DIR", help="config.json + model.safetensors, checkpoints, metrics")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest epoch")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=positive_int, default=64, help="pairs per step (whole groups)")
    p.add_argument("--negatives", type=positive_int, default=3, help="hard negatives per caption and epoch")
    p.add_argument("--hard-k", type=positive_int, default=8, help="negatives are drawn from the dual top-k")
    p.add_argument("--loss", default="", help="bce or hinge (default: the matcher's own: xattn bce, imram/wcgl hinge)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, metavar="JSON",
                   help='matcher config overrides as JSON, e.g. \'{"steps": 2}\' (width and encoder are filled in)')
    add_device_arg(p)


def run(args) -> int:
    from ..data import load_dataset
    from ..encoders import create_encoder
    from ..errors import ConfigError
    from ..rerank.training import MatcherTrainConfig, matcher_class, train_matcher
    from ..rerank.tokens import check_token_encoder

    cls = matcher_class(args.matcher)
    overrides = json_object(args.config, "--config", example=None)
    tc = MatcherTrainConfig(loss=args.loss, negatives=args.negatives, hard_k=args.hard_k, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    ds = load_dataset(args.dataset, split=None if args.split == "all" else args.split, check_media=True)
    if len(ds) < 2:
        raise ConfigError(f"{args.dataset}: {len(ds)} item(s) in split {args.split!r}; training needs at least 2")
    enc = create_encoder(args.encoder, device=args.device)
    check_token_encoder(enc, label=f"the {args.matcher} re-ranker")
    width = getattr(enc, "token_width", None) or int(enc.encode_text_tokens(ds.texts[:1])[0].shape[-1])
    config = cls.Config.from_dict({"seed": args.seed, **overrides, "width": int(width), "encoder": args.encoder})
    sims = None
    if args.dual and args.dual != args.encoder:
        dual = create_encoder(args.dual, device=args.device)
        sims = dual.encode_text(ds.texts) @ dual.encode_images(ds.media).T
    rr = train_matcher(cls(config), enc, ds.texts, ds.media, ds.text_to_item, tc, sims=sims, out=args.out,
                       resume=args.resume, info={"dataset": args.dataset, "split": args.split,
                                                 "dual": args.dual or args.encoder})
    print(f"trained {args.matcher} on {len(ds)} images / {ds.num_texts} captions ({rr.info['epochs']} epochs, "
          f"final loss {rr.info['final_loss']}, pair accuracy {rr.info['final_pair_acc']}); saved to {args.out} "
          f"(use --rerank {args.matcher}:{args.out})")
    return 0


register_command("train-reranker", "train a token-level re-ranker (xattn, imram, wcgl) with hard negatives from a "
                 "dual encoder", setup, run)
