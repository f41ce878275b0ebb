"""``xmr train``: train adapter heads on a frozen encoder, or a tiny model from scratch, with a registered loss;
checkpoint every epoch (``--resume`` continues a killed run), evaluate every epoch, write metrics.csv and curve.png.
The output folder loads as ``--model trained:DIR``."""
from __future__ import annotations

from ._common import add_device_arg, json_object, progress_flag, register_command


def setup(p):
    p.add_argument("--dataset", required=True, metavar="SPEC",
                   help="training data, e.g. manifest:synth/captions.jsonl or coco:DIR")
    p.add_argument("--split", default="train", help="training split (default train; 'all' for every item)")
    p.add_argument("--eval-dataset", default=None, metavar="SPEC", help="evaluation data (default: --dataset)")
    p.add_argument("--eval-split", default="test", help="evaluation split, evaluated every epoch (default test; "
                   "'none' for no evaluation)")
    p.add_argument("--model", default="concept", metavar="SPEC",
                   help="adapter mode: the frozen encoder (default concept); full mode: tiny or tiny:<dir>; "
                   "finetune mode: hf:<dir or id> or openclip:ARCH:TAG")
    p.add_argument("--mode", default="adapter", choices=["adapter", "full", "finetune"],
                   help="adapter: train adapter heads on frozen towers (features cached); full: train every weight "
                   "of a tiny model; finetune: train an hf:/openclip: model's own weights (--finetune)")
    p.add_argument("--finetune", default="whole", metavar="WHAT",
                   help="finetune mode: whole (default), last:N (last N blocks of each tower + final norms and "
                   "projections), projections, lora (peft)")
    p.add_argument("--lora", default=None, metavar="JSON",
                   help="--finetune lora settings, e.g. '{\"r\": 8, \"alpha\": 16, \"target_modules\": [\"q_proj\", "
                   "\"v_proj\"]}'")
    p.add_argument("--loss", default="infonce", help="a registered loss: infonce (default), vsepp, ncr, mrl, cots, coder, neighbourhood, pcme, daa, dhd, teachtext, miles (video data, --mode full) (docs/training.md; dhd: search the result as hash:OUT)")
    p.add_argument("--teachers", default=None, metavar="SPEC[,SPEC...]",
                   help="frozen teacher encoders for --loss teachtext, e.g. concept:zeroshot,concept:fast,text:concept "
                   "(text:SPEC: only its text tower); their embeddings are computed once and cached")
    p.add_argument("--loss-config", default=None, metavar="JSON", help="the loss's settings, e.g. '{\"margin\": 0.2}'")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder: checkpoints/, metrics.csv, curve.png; loads as trained:DIR")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="no", choices=["no", "fp16", "bf16"], help="mixed precision (default no)")
    p.add_argument("--captions", default="all", help="caption policy of the training split: all, first, firstN")
    p.add_argument("--protocol", default="standard", help="evaluation protocol (default standard)")
    p.add_argument("--adapter-hidden", type=int, default=256, help="adapter bottleneck width (default 256)")
    p.add_argument("--adapter-projection", action="store_true",
                   help="non-residual projection heads instead of residual adapters")
    p.add_argument("--adapter-dim", type=int, default=0, help="projection output width (with --adapter-projection)")
    p.add_argument("--tiny-config", default=None, metavar="JSON", help="TinyConfig fields for --mode full --model tiny")
    p.add_argument("--frames", type=int, default=None, metavar="T",
                   help="video data sets (--mode full): frames per clip, spread uniformly (default 4; refused on "
                        "image data sets)")
    p.add_argument("--keep", type=int, default=2, help="epoch checkpoints kept (default 2)")
    p.add_argument("--save-every", type=int, default=1, metavar="N",
                   help="checkpoint every N epochs and after the last (default 1)")
    add_device_arg(p)


def run(args) -> int:
    from ..train import TrainConfig, train
    from ..train.teachers import parse_teachers

    cfg = TrainConfig(
        dataset=args.dataset, model=args.model, mode=args.mode, loss=args.loss,
        loss_config=json_object(args.loss_config, "--loss-config"),
        split=None if args.split == "all" else args.split, eval_dataset=args.eval_dataset,
        eval_split=None if args.eval_split == "none" else args.eval_split, captions=args.captions,
        protocol=args.protocol, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, seed=args.seed, precision=args.precision, adapter_hidden=args.adapter_hidden,
        adapter_residual=not args.adapter_projection, adapter_dim=args.adapter_dim,
        tiny=json_object(args.tiny_config, "--tiny-config"), finetune=args.finetune,
        lora=json_object(args.lora, "--lora"),
        teachers=parse_teachers(args.teachers) if args.teachers is not None else (), frames=args.frames)
    res = train(cfg, args.out, resume=args.resume, device=args.device, show_progress=progress_flag(args),
                keep_checkpoints=args.keep, save_every=args.save_every)
    last = res.history[-1] if res.history else {}
    where = f" after epoch {res.resumed_from}" if res.resumed_from else ""
    scores = ", ".join(f"{k} {last[k]}" for k in ("t2i_R@1", "i2t_R@1", "rsum") if k in last)
    print(f"trained {cfg.loss} ({cfg.mode}, {cfg.model}) for {res.epochs} epochs{where}: {scores or 'no evaluation'}"
          f"; saved to {res.out} (use --model trained:{res.out}" + (
              f"; its hash codes: --model hash:{res.out})" if cfg.loss == "dhd" else ")"))
    return 0


register_command("train", "train adapter heads on a frozen encoder, a tiny model from scratch (images or videos), or "
                 "fine-tune an hf:/openclip: model (losses: infonce, vsepp, ncr, mrl, cots, coder, neighbourhood, pcme, "
                 "daa, dhd, teachtext, miles)", setup, run)
