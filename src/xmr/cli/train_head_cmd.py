"""``xmr train-head``: train a temporal video head on frozen encoder features (symmetric InfoNCE); ``--head lean``
trains a many-frame teacher that reads associated captions, then distils the few-frame student it saves
(:mod:`xmr.heads.lean`); ``--head ts2net-vit`` fine-tunes an ``hf:`` CLIP end to end as TS2-Net does (token shift inside
its last ViT blocks, :mod:`xmr.train.ts2net_vit`) and saves a folder that loads as ``--model ts2net:DIR``."""
from __future__ import annotations

from ._common import add_device_arg, json_object, positive_int, register_command


def setup(p):
    p.add_argument("--dataset", required=True, metavar="SPEC", help="video dataset, e.g. manifest:DIR/captions.jsonl")
    p.add_argument("--split", default="train", help="split to train on (default train; 'all' for every item)")
    p.add_argument("--encoder", default="tiny", metavar="SPEC", help="frozen encoder spec (default tiny)")
    p.add_argument("--head", required=True, help="mean, seqtransf, xpool, ts2net, prototypes, lean, textweighted; "
                   "ts2net-vit: TS2-Net fine-tuned end to end on an hf: CLIP (not frozen; loads as ts2net:OUT)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="where to save config.json + model.safetensors (ts2net-vit: a new or empty folder, or its run "
                        "with --resume; epoch checkpoints under DIR/checkpoints)")
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
    ts2 = p.add_argument_group("ts2net-vit (TS2-Net as the paper trains it, docs/video_heads.md)")
    ts2.add_argument("--finetune", default=None, metavar="WHAT",
                     help="what of the hf: model is trained: whole (default, as TS2-Net), last:N (the last N blocks of "
                          "each tower + final norms and projections), projections; the TS2-Net parts always")
    ts2.add_argument("--clip-lr", type=float, default=None, metavar="LR",
                     help="learning rate of the CLIP weights (default --lr, which the TS2-Net parts use; TS2-Net: "
                          "1e-7 with --lr 1e-4)")
    ts2.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its newest checkpoint (same settings; only --epochs may "
                          "grow): ends with the weights of an uninterrupted run")
    ts2.add_argument("--save-every", type=positive_int, default=1, metavar="N",
                     help="checkpoint (model + optimizer + RNG states) into --out/checkpoints every N epochs and after "
                          "the last (default 1)")
    ts2.add_argument("--keep", type=int, default=2, metavar="N", help="epoch checkpoints kept (default 2; 0: all)")
    ts2.add_argument("--eval-split", default=None, metavar="SPLIT",
                     help="evaluate on this split of --dataset before training and after every epoch (R@1/5/10, MdR "
                          "as xmr eval scores ts2net:DIR; into --out/metrics.csv); default: no evaluation")
    add_device_arg(p)


def run(args) -> int:
    from ..data import load_dataset
    from ..encoders import create_encoder
    from ..errors import ConfigError
    from ..heads import VIDEO_HEADS, _load_all
    from ..heads.train import train_head
    from ..video import frame_features, frame_tokens  # FramePlan.uniform(--frames, 224), as xmr eval samples

    if args.head == "ts2net-vit":
        return _train_ts2net_vit(args)
    if (args.finetune is not None or args.clip_lr is not None or args.resume or args.save_every != 1
            or args.keep != 2 or args.eval_split is not None):
        raise ConfigError("--finetune / --clip-lr / --resume / --save-every / --keep / --eval-split only apply to "
                          "--head ts2net-vit (the other heads train on frozen features in one go)")
    _load_all()
    cls = VIDEO_HEADS.get(args.head)
    overrides = json_object(args.config, "--config", example=None)
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


def _train_ts2net_vit(args) -> int:
    """TS2-Net end to end on an hf: CLIP (xmr.train.ts2net_vit): checkpoints every epoch into --out, which loads as
    ts2net:OUT; --resume continues a killed run. --out and a resume's settings are checked before any decoding."""
    from ..config import config_from_dict
    from ..data import load_dataset
    from ..encoders import absolute_spec, create_encoder
    from ..errors import ConfigError
    from ..heads.ts2net_vit import TS2NetViT, TS2NetViTConfig
    from ..train.ts2net_vit import evaluator, text_inputs, train_ts2net_vit, video_pixels
    from ..train.ts2net_vit_state import TS2NetViTTrainConfig, open_run
    from ..video import FramePlan

    if not args.encoder.startswith("hf:"):
        raise ConfigError(f"--head ts2net-vit fine-tunes a CLIP-style hf: model (--encoder hf:DIR), not "
                          f"{args.encoder!r}; for frozen features use --head ts2net")
    frames = args.frames or 8
    if frames < 1 or args.epochs < 1:
        raise ConfigError("--frames and --epochs must be >= 1 for --head ts2net-vit")
    if args.keep < 0:
        raise ConfigError(f"--keep must be >= 0 (0: keep every checkpoint), got {args.keep}")
    overrides = json_object(args.config, "--config", example=None)
    finetune = args.finetune or "whole"
    from ..train.finetune import parse_how

    parse_how(finetune)  # a bad value fails before any decoding
    split = None if args.split == "all" else args.split
    ds = load_dataset(args.dataset, split=split, check_media=True)
    if len(ds) < 2:
        raise ConfigError(f"{args.dataset}: {len(ds)} item(s) in split {args.split!r}; training needs at least 2")
    ev_ds = load_dataset(args.dataset, split=args.eval_split, check_media=True) if args.eval_split else None
    enc = create_encoder(args.encoder, device=args.device)
    cfg = config_from_dict(TS2NetViTConfig, {"dim": enc.dim, "max_frames": max(frames, 12), "num_frames": frames,
                                             "seed": args.seed, **overrides})
    model = TS2NetViT(enc.model, cfg)  # ConfigError for towers without class-token ViT blocks
    base = absolute_spec(args.encoder)
    clip_lr = args.clip_lr or args.lr
    provenance = {"dataset": args.dataset, "split": args.split, "base": base, "eval_split": args.eval_split,
                  "frames": FramePlan.uniform(frames, 224).to_dict()}
    train_kw = dict(finetune=finetune, epochs=args.epochs, lr=clip_lr, head_lr=args.lr, batch_size=args.batch_size,
                    seed=args.seed)
    pairs = [(t, int(v)) for t, v in enumerate(ds.text_to_item)]
    # the run's settings, as train_ts2net_vit will record them: --out / --resume refused before hours of decoding
    run = TS2NetViTTrainConfig.for_run(cfg, videos=len(ds), captions=len(ds.texts), pairs=len(pairs), frames=frames,
                                       provenance=provenance, **train_kw)
    found = open_run(args.out, run, args.resume)
    if found is not None and found[1]["epoch"] == args.epochs:
        print(f"{args.out} has already trained {args.epochs} epochs; nothing to do (give a larger --epochs to "
              f"train on; use --model ts2net:{args.out})")
        return 0
    pixels = video_pixels(enc, ds.items, frames)
    texts = text_inputs(enc, ds.texts)
    evaluate = None
    if ev_ds is not None:
        evaluate = evaluator(video_pixels(enc, ev_ds.items, frames), text_inputs(enc, ev_ds.texts), ev_ds.text_to_item,
                             batch_size=args.batch_size)
    train_ts2net_vit(model, pixels, texts, pairs, **train_kw, label=args.encoder, out=args.out, base=base,
                     resume=args.resume, keep=args.keep, save_every=args.save_every, provenance=provenance,
                     evaluate=evaluate)
    where = f", resumed after epoch {model.resumed_from}" if model.resumed_from else ""
    last = model.metrics[-1]
    scores = f", {args.eval_split} t2v R@1 {last['t2v_R@1']:.1f}" if ev_ds is not None else ""
    print(f"trained ts2net-vit ({finetune} of {args.encoder} + token shift in its last {cfg.shift_layers} ViT "
          f"blocks, selection, text-weighted frames) on {len(ds)} videos / {len(ds.texts)} captions ({frames} "
          f"frames){where}, final loss {model.history[-1]:.4f}{scores}; saved to {args.out} with checkpoints in "
          f"{args.out}/checkpoints (use --model ts2net:{args.out})")
    return 0


register_command("train-head", "train a temporal video head (mean, seqtransf, xpool, ts2net, prototypes, lean) "
                 "on frozen frame features, or TS2-Net end to end on an hf: CLIP (ts2net-vit)", setup, run)
