"""``xmr train-head``: train a temporal video head on frozen encoder features (symmetric InfoNCE); ``--head lean``
trains a many-frame teacher that reads associated captions, then distils the few-frame student it saves
(:mod:`xmr.heads.lean`)."""
from __future__ import annotations

from ._common import add_device_arg, positive_int, register_command


def setup(p):
    p.add_argument("--dataset", required=True, metavar="SPEC", help="video dataset, e.g. manifest:DIR/captions.jsonl")
    p.add_argument("--split", default="train", help="split to train on (default train; 'all' for every item)")
    p.add_argument("--encoder", default="tiny", metavar="SPEC", help="frozen encoder spec (default tiny)")
    p.add_argument("--head", required=True, help="mean, seqtransf, xpool, ts2net, prototypes, lean")
    p.add_argument("--out", required=True, metavar="DIR", help="where to save config.json + model.safetensors")
    p.add_argument("--frames", type=int, default=None,
                   help="frames sampled per video (default 8; lean: the student's frames, default 4)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, metavar="JSON",
                   help='head config overrides as JSON, e.g. \'{"layers": 2}\' (dim/width come from the encoder)')
    lean = p.add_argument_group("lean (a few-frame student distilled from a many-frame teacher, docs/lean.md)")
    lean.add_argument("--teacher-frames", type=int, default=16, metavar="N",
                      help="frames the teacher looks at (default 16; a multiple of --frames, so the student's frames "
                           "are the ones xmr eval / xmr index decode for it)")
    lean.add_argument("--support-size", type=int, default=4, metavar="S",
                      help="captions of the video the teacher reads with each caption (default 4)")
    lean.add_argument("--distill-similarity", choices=("diag", "adapt"), default="diag",
                      help="similarity distillation on positive pairs (diag, default) or Adaptive Distillation (adapt)")
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
    is_lean = args.head == "lean"
    if args.frames is None:
        args.frames = 4 if is_lean else 8
    if args.frames < 1 or args.epochs < 0:
        raise ConfigError("--frames must be >= 1 and --epochs >= 0")
    if is_lean:
        from ..heads.lean import LeanTrainConfig

        if args.epochs < 1:
            raise ConfigError("--epochs must be >= 1 for --head lean")
        if args.teacher_frames < args.frames or args.teacher_frames % args.frames:
            raise ConfigError(f"--teacher-frames ({args.teacher_frames}) must be a multiple of --frames "
                              f"({args.frames}), so the student trains on the frames it is evaluated on")
        lean_cfg = LeanTrainConfig(teacher_frames=args.teacher_frames, student_frames=args.frames,
                                   support_size=args.support_size, similarity=args.distill_similarity,
                                   epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    elif (args.teacher_frames, args.support_size, args.distill_similarity) != (16, 4, "diag"):
        raise ConfigError("--teacher-frames / --support-size / --distill-similarity only apply to --head lean")
    ds = load_dataset(args.dataset, split=None if args.split == "all" else args.split, check_media=True)
    if len(ds) < 2:
        raise ConfigError(f"{args.dataset}: {len(ds)} item(s) in split {args.split!r}; training needs at least 2")
    enc = create_encoder(args.encoder, device=args.device)
    if is_lean:
        return _train_lean(args, ds, enc, overrides, lean_cfg)
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


def _train_lean(args, ds, enc, overrides: dict, cfg) -> int:
    """Features at the teacher's frames (the student's are a uniform subset), teacher, student; saves the student."""
    import torch

    from ..heads.lean import train_lean
    from ..video import FramePlan, frame_features

    feats = frame_features(enc, ds.items, cfg.teacher_frames)
    text = torch.from_numpy(enc.encode_text(ds.texts, show_progress=False))
    pairs = [(t, int(v)) for t, v in enumerate(ds.text_to_item)]
    head = train_lean(feats, text, pairs, cfg, overrides)
    head.save(args.out, training={**head.provenance, "dataset": args.dataset, "split": args.split,
                                  "encoder": args.encoder, "frames": FramePlan.uniform(args.frames, 224).to_dict(),
                                  "teacher_frames": FramePlan.uniform(cfg.teacher_frames, 224).to_dict(),
                                  "videos": len(ds), "captions": int(len(text))})
    print(f"trained lean on {len(ds)} videos / {len(text)} captions: teacher {cfg.teacher_frames} frames + "
          f"{cfg.support_size} associated captions, student {args.frames} frames (encoder {args.encoder}); saved to "
          f"{args.out}; use it as --model video:{args.encoder}+lean@{args.out}")
    return 0


register_command("train-head", "train a temporal video head (mean, seqtransf, xpool, ts2net, prototypes, lean) "
                 "on frozen frame features", setup, run)
