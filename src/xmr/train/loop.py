"""The training loop, on HF Accelerate: the same code runs on the CPU, one GPU, or several GPUs / machines started
with ``accelerate launch`` (each process takes every k-th batch of the epoch; DDP all-reduces the gradients; a
loss's negatives are the ones on its own process).

One epoch: the loss's epoch hook (e.g. NCR's co-divide), then batches of distinct images in a seeded order, each
with one of its captions drawn with the same seed; after the epoch: evaluation with an xmr protocol on the
evaluation split, a checkpoint (:mod:`.state`), ``metrics.csv``, ``curve.png``. The batch order and every random
draw depend only on ``(seed, epoch)``, so a run resumed from its last checkpoint ends with the same weights as an
uninterrupted one.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .config import TrainConfig
from .data import PairData, build_pairs, tiny_inputs
from .losses import Batch, EpochContext, LossInfo, create_loss
from .model import AdapterModel, TinyModel
from .report import TensorBoard, plot_curve, write_csv
from .state import check_out, load_cuda_rng, load_state, restore_cuda_rng, save_epoch
from .teachers import load_teachers, teacher_features

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out: Path  # the run folder (loadable as trained:OUT)
    epochs: int  # epochs done in total
    history: list[dict]  # one metrics row per epoch (row 0: evaluation before training, when there is one)
    resumed_from: int  # epoch the run resumed after (0: fresh)


class _System(nn.Module):
    """Model + loss in one module, so Accelerate / DDP wrap (and checkpoints hold) both."""

    def __init__(self, model: nn.Module, loss: nn.Module):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, img_in, txt_in, index, item, labels, txt_ref, epoch: int, teachers: tuple = ()):
        b = Batch(img=self.model.encode_image(img_in), txt=self.model.encode_text(txt_in), index=index,
                  img_in=img_in, txt_in=txt_in, item=item, labels=labels, txt_ref=txt_ref, epoch=epoch,
                  teachers=teachers)
        return self.loss(b, self.model)


# ------------------------------------------------------------------------------------------------ building


def _refuse_full(spec: str) -> None:
    name = spec.partition(":")[0]
    why = {
        "concept": "concept is training-free (an ImageNet classifier and a sentence encoder meeting in a fixed concept "
                   "space): train adapters on it with --mode adapter",
        "hf": "fine-tune hf: models with --mode finetune (--finetune whole, last:N, projections or lora)",
        "openclip": "fine-tune openclip: models with --mode finetune (--finetune whole, last:N, projections or lora)",
        "video": "video models are trained with `xmr train-head`",
        "trained": "continue a trained adapter run with --resume on its folder; --mode full trains tiny models",
    }.get(name, f"encoder {name!r} cannot be trained in mode full")
    raise ConfigError(f"--mode full --model {spec}: {why}")


def _build(cfg: TrainConfig, device, show_progress, encoder=None) -> tuple[nn.Module, PairData, PairData | None]:
    model, tr, ev, train_ds, teachers = _build_student(cfg, device, show_progress, encoder)
    if teachers:  # after the student's inputs, so a student that cannot be built fails before any teacher encodes
        tr = tr.with_teachers(teacher_features(teachers, train_ds, show_progress=show_progress))
    return model, tr, ev


def _build_student(cfg: TrainConfig, device, show_progress, encoder=None):
    from ..data import load_dataset

    teachers = load_teachers(cfg.teachers, device)  # every teacher built (or refused) before anything is encoded
    train_ds = load_dataset(cfg.dataset, split=cfg.split, captions=cfg.captions, check_media=True)
    if len(train_ds) < 2:
        raise ConfigError(f"{cfg.dataset}: {len(train_ds)} image(s) in split {cfg.split!r}; training needs at least 2")
    eval_ds = None
    if cfg.eval_split is not None:
        eval_ds = load_dataset(cfg.eval_dataset or cfg.dataset, split=cfg.eval_split, check_media=True)
    from ..media import media_type_of

    kinds = {media_type_of(p) for p in train_ds.media} | ({media_type_of(p) for p in eval_ds.media} if eval_ds else set())
    if kinds == {"video"}:
        from .video_data import build_video_student

        if teachers:
            raise ConfigError("--teachers: teachers embed images; video runs take no teachers")
        return (*build_video_student(cfg, train_ds, eval_ds), train_ds, teachers)
    if kinds != {"image"}:
        raise ConfigError(f"{cfg.dataset}: xmr train trains on images, or on videos (--mode full, a tiny space-time "
                          f"model), not on a mix ({', '.join(sorted(map(str, kinds)))}); train video heads on frozen "
                          "frame features with `xmr train-head`")
    if cfg.frames is not None:
        raise ConfigError(f"--frames {cfg.frames}: frames per clip apply to video data sets only, and {cfg.dataset} "
                          "holds images; leave --frames out")
    if cfg.mode == "finetune":
        from .finetune import FinetuneModel, finetune_pairs

        if encoder is not None:
            raise ConfigError("--mode finetune builds its own copy of --model (its weights are trained)")
        model = FinetuneModel(cfg.model, cfg.finetune, cfg.lora, cfg.seed, device)
        tr = finetune_pairs(model, train_ds)
        ev = finetune_pairs(model, eval_ds, with_labels=False) if eval_ds else None
        return model, tr, ev, train_ds, teachers
    if cfg.mode == "full":
        name, _, arg = cfg.model.partition(":")
        if name != "tiny":
            _refuse_full(cfg.model)
        from ..encoders.tiny import TinyConfig, TinyDualEncoder

        if arg:
            start = TinyDualEncoder.load(arg)
            if cfg.tiny:
                raise ConfigError("--tiny-config applies to a fresh `tiny`; a tiny:<dir> start keeps its own config")
            model = TinyModel(start.config, start.state_dict())
        else:
            model = TinyModel(TinyConfig.from_dict({**cfg.tiny, "seed": cfg.seed}))
        c = model.net.config
        tr = build_pairs(train_ds, *tiny_inputs(c, train_ds))
        ev = build_pairs(eval_ds, *tiny_inputs(c, eval_ds), with_labels=False) if eval_ds else None
        return model, tr, ev, train_ds, teachers
    from ..encoders import absolute_spec, create_encoder
    from ..encoders.trained import AdapterConfig
    from .features import cached_features

    if encoder is not None and encoder.spec != cfg.model:
        raise ConfigError(f"the encoder given ({encoder.spec}) is not --model {cfg.model}")
    enc = encoder if encoder is not None else create_encoder(cfg.model, device=str(device))
    if not (enc.capabilities.text and enc.capabilities.images):
        raise ConfigError(f"--mode adapter needs an encoder with text and image towers; {cfg.model} has not both")
    img, txt, _ = cached_features(enc, train_ds, show_progress=show_progress)
    dim_i, dim_t = img.shape[1], txt.shape[1]
    out_dim = cfg.adapter_dim if not cfg.adapter_residual else 0
    if cfg.adapter_residual and dim_i != dim_t:
        raise ConfigError(f"{cfg.model}: image width {dim_i} != text width {dim_t}; residual adapters need one width "
                          "(use --adapter-projection --adapter-dim D)")
    model = AdapterModel(AdapterConfig(dim_i, out_dim or (0 if cfg.adapter_residual else max(dim_i, dim_t)),
                                       cfg.adapter_hidden, cfg.adapter_residual, cfg.seed),
                         AdapterConfig(dim_t, out_dim or (0 if cfg.adapter_residual else max(dim_i, dim_t)),
                                       cfg.adapter_hidden, cfg.adapter_residual, cfg.seed + 1),
                         absolute_spec(cfg.model))
    tr = build_pairs(train_ds, img, txt, txt_ref=txt)
    ev = None
    if eval_ds is not None:
        ei, et, _ = cached_features(enc, eval_ds, show_progress=show_progress)
        ev = build_pairs(eval_ds, ei, et, txt_ref=et, with_labels=False)
    return model, tr, ev, train_ds, teachers


def _check_teachers(cfg: TrainConfig) -> None:
    """--teachers and a loss that distils them go together (checked before anything is built)."""
    from .losses import LOSSES

    needs = LOSSES.get(cfg.loss).needs
    if "teachers" in needs and not cfg.teachers:
        raise ConfigError(f"--loss {cfg.loss} distils frozen teachers: give --teachers SPEC[,SPEC...], e.g. "
                          "--teachers concept,concept:fast,text:concept")
    if cfg.teachers and "teachers" not in needs:
        raise ConfigError(f"--teachers: --loss {cfg.loss} uses no teachers; use --loss teachtext (or leave out "
                          "--teachers)")


# ------------------------------------------------------------------------------------------------ the epoch


def epoch_batches(data: PairData, batch_size: int, seed: int, epoch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image indices, pair ids) per batch: images in a permutation drawn from ``(seed, epoch)``, each with one of
    its captions drawn from the same generator; a last batch of one image is dropped (no negatives)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(data.num_items)
    off = data.text_offsets
    caps = rng.integers(off[order], off[order + 1])
    out = []
    for s in range(0, len(order), batch_size):
        if len(order[s: s + batch_size]) >= 2:
            out.append((order[s: s + batch_size], caps[s: s + batch_size]))
    return out


@torch.no_grad()
def embed_pairs(net: nn.Module, data: PairData, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, d) image embeddings (each pair's image) and (P, d) caption embeddings of every pair."""
    was = net.training
    net.eval()
    img = torch.cat([net.encode_image(data.img_in[s: s + chunk]) for s in range(0, data.num_items, chunk)])
    txt = torch.cat([net.encode_text(data.txt_in[s: s + chunk]) for s in range(0, data.num_pairs, chunk)])
    net.train(was)
    return img[data.text_to_item].float(), txt.float()


@torch.no_grad()
def evaluate_pairs(net: nn.Module, data: PairData, protocol: str) -> dict:
    """xmr's retrieval metrics of ``net`` on an evaluation split (every caption against every image)."""
    from ..eval import evaluate_sims

    was = net.training
    net.eval()
    img = torch.cat([net.encode_image(data.img_in[s: s + 512]) for s in range(0, data.num_items, 512)]).float()
    txt = torch.cat([net.encode_text(data.txt_in[s: s + 512]) for s in range(0, data.num_pairs, 512)]).float()
    net.train(was)
    return evaluate_sims((txt @ img.T).cpu().numpy(), data.text_to_item.cpu().numpy(), protocol=protocol)


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, device: str | None = None,
          show_progress: bool | None = None, keep_checkpoints: int = 2,
          on_step: Callable[[int, int], None] | None = None, encoder=None, save_every: int = 1) -> TrainResult:
    """Run (or resume) a training run into ``out``; see the module docstring. ``on_step(epoch, step)`` is called
    after every optimiser step (tests use it to interrupt a run). ``encoder``: the frozen encoder of ``cfg.model``,
    already built (adapter mode; benchmarks share one across runs instead of loading it per run). ``save_every``:
    checkpoint (and write metrics.csv / curve.png) every that many epochs and after the last one; a kill loses at
    most the epochs since the last checkpoint."""
    if save_every < 1:
        raise ConfigError(f"--save-every must be >= 1, got {save_every}")
    from .._deps import require

    require("accelerate", "train")
    require("matplotlib", "train")
    if cfg.loss == "ncr":
        require("sklearn", "train", "scikit-learn")
    if cfg.mode == "finetune" and cfg.finetune == "lora":
        require("peft", "train")
    _check_teachers(cfg)
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    out = Path(out).expanduser()
    ckpt = check_out(out, resume)  # refuses a wrong --out before anything is computed or written
    meta = None
    if ckpt is not None:
        meta, system_sd, optim_sd, rng = load_state(ckpt)
        saved = TrainConfig.from_dict(meta["config"])
        diff = cfg.differences(saved)
        if diff:
            raise ConfigError(f"--resume: {out} was trained with other settings ({', '.join(diff)} differ); give the "
                              "same ones (only --epochs may grow)")
        if meta["epoch"] >= cfg.epochs:
            log.info("%s: already trained for %d epochs", out, meta["epoch"])
            return TrainResult(out, meta["epoch"], meta["history"], meta["epoch"])
    if device not in (None, "cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: xmr train takes cpu or cuda; choose GPUs with CUDA_VISIBLE_DEVICES or "
                          "`accelerate launch`")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available here; use --device cpu")
    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    # Accelerate keeps one process-wide state and refuses a second Accelerator with another precision; each run
    # (benchmarks and tests call train() many times) starts its own. The process group (PartialState) is kept.
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    acc = Accelerator(cpu=cpu, mixed_precision=cfg.precision,
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    dev = acc.device
    torch.manual_seed(cfg.seed)
    model, tr, ev = _build(cfg, dev, show_progress, encoder)
    info = LossInfo(num_pairs=tr.num_pairs, dim=model.dim, num_classes=len(tr.classes), seed=cfg.seed,
                    texts=tr.texts)
    loss = create_loss(cfg.loss, cfg.loss_config, model, info)
    if "labels" in loss.needs and tr.labels is None:
        raise ConfigError(f"--loss {cfg.loss} needs class labels ('label' on every manifest line); {cfg.dataset} has none")
    if cfg.mode == "finetune" and loss.export_heads():
        raise ConfigError(f"--loss {cfg.loss} trains extra heads saved beside adapters: use --mode adapter")
    if "txt_ref" in loss.needs and tr.txt_ref is None:
        raise ConfigError(f"--loss {cfg.loss} needs frozen caption features: use --mode adapter")
    system = _System(model, loss)
    params = [p for p in system.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict] = []
    start, step = 0, 0
    if meta is not None:
        system.load_state_dict(system_sd)
        opt.load_state_dict(optim_sd)
        torch.set_rng_state(rng)
        restore_cuda_rng(load_cuda_rng(ckpt))  # a GPU run's device draws go on where they were (a CPU run saves none)
        start, step, history = meta["epoch"], meta["step"], meta["history"]
        log.info("resuming %s after epoch %d", out, start)
    system, opt = acc.prepare(system, opt)
    inner: _System = acc.unwrap_model(system)
    tr, ev = tr.to(dev), (ev.to(dev) if ev is not None else None)
    out.mkdir(parents=True, exist_ok=True)
    tb = TensorBoard(out) if acc.is_main_process else None
    title = f"{cfg.loss} / {cfg.mode} {cfg.model} on {tr.name}"
    def eval_row(row: dict) -> dict:
        t1 = time.perf_counter()
        m = evaluate_pairs(inner.model, ev, cfg.protocol)
        row["eval_s"] = round(time.perf_counter() - t1, 3)
        for d in ("t2i", "i2t"):
            for k in ("R@1", "R@5", "R@10", "MdR"):
                row[f"{d}_{k}"] = round(m[d][k], 4)
        row["rsum"] = round(sum(m[d][f"R@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)), 4)
        return row

    if start == 0 and ev is not None:  # the starting point, measured in the same run (epoch 0: before training)
        history.append(eval_row({"epoch": 0, "steps": 0}))
    try:
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            inner.train()
            ctx = EpochContext(epoch=epoch, epochs=cfg.epochs, seed=cfg.seed, model=inner.model,
                               embed_all=lambda net: embed_pairs(net, tr), num_pairs=tr.num_pairs,
                               pair_item=tr.text_to_item, noisy_truth=tr.noisy)
            row_extra = inner.loss.on_epoch_start(ctx)
            batches = epoch_batches(tr, cfg.batch_size, cfg.seed, epoch)
            n_proc = acc.num_processes
            batches = batches[: len(batches) - len(batches) % n_proc] if n_proc > 1 else batches
            total, logs_sum, n = 0.0, {}, 0
            for items, pairs in batches[acc.process_index:: n_proc]:
                items_t = torch.from_numpy(items).to(dev)
                pairs_t = torch.from_numpy(pairs).to(dev)
                with acc.autocast():
                    loss_v, logs = system(tr.img_in[items_t], tr.txt_in[pairs_t], pairs_t, items_t,
                                          None if tr.labels is None else tr.labels[items_t],
                                          None if tr.txt_ref is None else tr.txt_ref[pairs_t], epoch,
                                          tr.teacher_batch(items_t, pairs_t))
                opt.zero_grad(set_to_none=True)
                acc.backward(loss_v)
                opt.step()
                inner.loss.after_step(inner.model)
                step += 1
                total += float(loss_v.detach())
                for k, v in logs.items():
                    logs_sum[k] = logs_sum.get(k, 0.0) + v
                n += 1
                if on_step is not None:
                    on_step(epoch, step)
            train_s = time.perf_counter() - t0
            row = {"epoch": epoch + 1, "steps": step, "train_loss": round(total / max(n, 1), 6),
                   "train_s": round(train_s, 3)}
            row.update({k: round(v / max(n, 1), 6) for k, v in logs_sum.items()})
            row.update({k: round(float(v), 6) for k, v in row_extra.items()})
            if ev is not None:
                eval_row(row)
            history.append(row)
            if acc.is_main_process and ((epoch + 1) % save_every == 0 or epoch + 1 == cfg.epochs):
                training = {"config": cfg.to_dict(), "epochs_done": epoch + 1, "metrics": row}
                save_epoch(out, epoch + 1, inner.model, inner.state_dict(), opt,
                           {"config": cfg.to_dict(), "step": step, "history": history, "training": training},
                           keep=keep_checkpoints, heads=inner.loss.export_heads())
                write_csv(out / "metrics.csv", history)
                plot_curve(out / "curve.png", history, title)
                tb.add(row)
            log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                     ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("epoch",)))
            acc.wait_for_everyone()
    finally:
        if tb is not None:
            tb.close()
    return TrainResult(out, cfg.epochs, history, start)


__all__ = ["TrainResult", "embed_pairs", "epoch_batches", "evaluate_pairs", "train"]
