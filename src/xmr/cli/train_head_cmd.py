"""``xmr train-head``: train a temporal video head on frozen encoder features (symmetric InfoNCE)."""
from __future__ import annotations

from ._common import add_device_arg, positive_int, register_command


def setup(p):
    p.add_argument("--dataset", required=True, metavar="SPEC", help="video dataset, e.g. manifest:DIR/captions.jsonl")
    p.add_argument("--split", default="train", help="split to train on (default train; 'all' for every item)")
    p.add_argument("--encoder", default="tiny", metavar="SPEC", help="frozen encoder spec (default tiny)")
    p.add_argument("--head", required=True, help="mean, seqtransf, xpool, ts2net, prototypes")
    p.add_argument("--out", required=True, metavar="DIR", help="where to save config.json + model.safetensors")
    p.add_argument("--frames", type=int, default=8, help="frames sampled per video (default 8)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, metavar="JSON",
                   help='head config overrides as JSON, e.g. \'{"layers": 2}\' (dim/width come from the encoder)')
    add_device_arg(p)


def run(args) -> int:
    import json

    from ..data import load_dataset
    from ..encoders import create_encoder
    from ..errors import ConfigError
    from ..heads import VIDEO_HEADS, _load_all
    from ..heads.train import train_head
    from ..video import frame_features, frame_tokens  # FramePlan.uniform(--frames, 224), as xmr eval samples

    _load_all()
    cls = VIDEO_HEADS.get(args.head)
    try:
        overrides = json.loads(args.config) if args.config else {}
    except ValueError as e:
        raise ConfigError(f"--config is not valid JSON ({e})") from None
    if not isinstance(overrides, dict):
        raise ConfigError("--config must be a JSON object")
    if args.frames < 1 or args.epochs < 0:
        raise ConfigError("--frames must be >= 1 and --epochs >= 0")
    ds = load_dataset(args.dataset, split=None if args.split == "all" else args.split, check_media=True)
    if len(ds) < 2:
        raise ConfigError(f"{args.dataset}: {len(ds)} item(s) in split {args.split!r}; training needs at least 2")
    enc = create_encoder(args.encoder, device=args.device)
    if cls.patch_tokens:
        feats = frame_tokens(enc, ds.items, args.frames)
        overrides.setdefault("width", int(feats.shape[-1]))
    else:
        feats = frame_features(enc, ds.items, args.frames)
    overrides.setdefault("dim", enc.dim)
    overrides.setdefault("max_frames", max(args.frames, 64))
    overrides.setdefault("num_frames", args.frames)  # index / eval subsample longer videos to what it was trained on
    import torch

    text = torch.from_numpy(enc.encode_text(ds.texts, show_progress=False))
    pairs = [(t, int(v)) for t, v in enumerate(ds.text_to_item)]
    head = train_head(feats, text, pairs, args.head, overrides, epochs=args.epochs, lr=args.lr, seed=args.seed,
                      batch_size=args.batch_size)
    from ..video import FramePlan

    head.save(args.out, training={"dataset": args.dataset, "split": args.split, "encoder": args.encoder,
                                  "frames": FramePlan.uniform(args.frames, 224).to_dict(), "epochs": args.epochs,
                                  "lr": args.lr, "seed": args.seed, "videos": len(ds), "captions": int(len(text))})
    print(f"trained {args.head} on {len(ds)} videos / {len(text)} captions ({args.frames} frames, "
          f"encoder {args.encoder}); saved to {args.out}")
    return 0


register_command("train-head", "train a temporal video head (mean, seqtransf, xpool, ts2net, prototypes) on frozen "
                 "frame features", setup, run)
