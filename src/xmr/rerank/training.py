"""Training of any token-level matcher (``xattn``, ``imram``, ``wcgl``) on top of a frozen token encoder.

:func:`train_matcher` is the one loop: for every caption, its own image is the positive and ``negatives`` images
are drawn from the dual encoder's top-``hard_k`` wrong items for that caption (hard negatives; topped up with random
items when the gallery is small). Each caption and its candidates form a group scored in one forward pass; the loss
is

* ``bce``: binary image-text matching, BCE-with-logits, positives weighted by ``negatives`` (both classes count
  equally) — what xattn uses;
* ``hinge``: the triplet ranking loss with the hardest negative of the group, ``max_j [margin - s(t, i+) +
  s(t, i_j)]_+`` (VSE++'s max-violation form, used by IMRAM and WCGL; here the negatives are the dual encoder's
  hard items rather than the mini-batch's, and only the caption-anchored direction is used);

plus ``extra_weight * matcher.extra_loss()`` when the matcher has one (WCGL's Wasserstein discriminant loss).
The encoder stays frozen: its tokens are computed once. AdamW; deterministic for a ``seed`` (its own numpy and torch
generators, the global ones untouched).

**Checkpoints and resume** (``out=DIR``): after every epoch ``DIR/checkpoints/epoch-NNNN/`` holds the matcher
(``config.json`` + ``model.safetensors``), ``state.safetensors`` (optimiser moments, torch RNG) and ``state.json``
(epoch, the numpy generator's state, the metrics so far, both configs); written to a temporary folder and renamed,
the newest two kept. ``DIR/metrics.csv`` has one row per epoch (``loss``, ``pair_acc``: share of groups whose
positive outscores all their negatives, ``seconds``), and ``DIR/config.json`` + ``model.safetensors`` the newest
matcher (loadable as ``NAME:DIR``). ``resume=True`` continues from the newest epoch and gives the same weights as an
uninterrupted run (``epochs`` may be raised to train longer); a resume with another training or matcher
config is refused.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..config import config_from_dict
from ..errors import ConfigError
from .tokens import TokenMatcher, TokenReranker, check_token_encoder, image_tokens, text_tokens

LOSSES = ("bce", "hinge")
CKPT_DIR = "checkpoints"
_EPOCH = re.compile(r"^epoch-(\d{4,})$")


@dataclass(frozen=True)
class MatcherTrainConfig:
    loss: str = ""  # "bce" or "hinge"; "" = the matcher's own (TokenMatcher.default_loss)
    negatives: int = 3  # negatives per caption and epoch
    hard_k: int = 8  # negatives are drawn from the dual encoder's top-hard_k wrong items of the caption
    epochs: int = 20
    batch_size: int = 32  # pairs per optimiser step (whole groups of 1 + negatives, at least one group)
    lr: float = 3e-3
    weight_decay: float = 0.01
    margin: float = 0.2  # hinge margin
    extra_weight: float = 1.0  # weight of the matcher's extra_loss() (WCGL's discriminant loss)
    seed: int = 0

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"negatives": (1, 1024), "hard_k": (1, 100000),
                                                        "epochs": (0, 100000), "batch_size": (1, 1 << 20)}

    def __post_init__(self):
        if self.loss not in ("",) + LOSSES:
            raise ConfigError(f"matcher training loss must be one of {LOSSES}, got {self.loss!r}")
        if self.negatives < 1 or self.hard_k < 1 or self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"MatcherTrainConfig: negatives, hard_k, batch_size >= 1, epochs >= 0, lr > 0: {self}")

    @classmethod
    def from_dict(cls, d: dict) -> "MatcherTrainConfig":
        return config_from_dict(cls, d)


def _hard_negatives(sims: np.ndarray, t2i: np.ndarray, hard_k: int) -> list[list[int]]:
    ranked = np.argsort(-np.asarray(sims), axis=1, kind="stable")
    return [[int(j) for j in row[: hard_k + 1] if j != t2i[i]][:hard_k] for i, row in enumerate(ranked)]


def _draw_groups(rng, hard: list[list[int]], t2i: np.ndarray, n_items: int, negatives: int) -> np.ndarray:
    """(T, 1 + negatives) item indices: the positive first, then the drawn negatives."""
    rows = []
    for i, pool in enumerate(hard):
        neg = [int(j) for j in rng.choice(pool, min(negatives, len(pool)), replace=False)] if pool else []
        while len(neg) < negatives:
            j = int(rng.integers(n_items))
            if j != t2i[i]:
                neg.append(j)
        rows.append([int(t2i[i])] + neg)
    return np.asarray(rows, dtype=np.int64)


def group_loss(scores: torch.Tensor, loss: str, margin: float = 0.2) -> torch.Tensor:
    """Loss of (G, 1 + n) scores whose column 0 is the positive (see the module docstring)."""
    if loss == "bce":
        n = scores.shape[1] - 1
        y = torch.zeros_like(scores)
        y[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(scores, y, pos_weight=torch.tensor(float(max(n, 1))))
    if loss == "hinge":
        return (margin - scores[:, :1] + scores[:, 1:]).clamp(min=0).max(dim=1).values.mean()
    raise ConfigError(f"unknown matcher loss {loss!r}; one of {LOSSES}")


# ------------------------------------------------------------------------------------------------ checkpoints


def _flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for name, v in tensors.items():
        if name.startswith("optim."):
            _, pid, k = name.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def _checkpoints(out: Path) -> list[tuple[int, Path]]:
    d = out / CKPT_DIR
    found = [(int(m.group(1)), p) for p in (d.iterdir() if d.is_dir() else [])
             if (m := _EPOCH.match(p.name)) and (p / "state.json").is_file()]
    return sorted(found)


def _save_epoch(out: Path, epoch: int, matcher: TokenMatcher, opt, rng, state: dict, keep: int = 2) -> None:
    from safetensors.torch import save_file

    d = out / CKPT_DIR
    d.mkdir(parents=True, exist_ok=True)
    final, tmp = d / f"epoch-{epoch:04d}", d / f".tmp-epoch-{epoch:04d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    matcher.save(tmp, {"epochs_done": epoch})
    opt_t, opt_meta = _flatten_optimizer(opt.state_dict())
    tensors = {k: v.detach().cpu().contiguous() for k, v in opt_t.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "state.safetensors"))
    meta = {**state, "epoch": epoch, "optimizer": opt_meta, "rng_numpy": rng.bit_generator.state}
    (tmp / "state.json").write_text(json.dumps(meta, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for _, old in _checkpoints(out)[:-keep]:
        shutil.rmtree(old)
    with open(out / ".metrics.csv.tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["epoch", "loss", "pair_acc", "seconds"])
        w.writeheader()
        w.writerows(state["history"])
    os.replace(out / ".metrics.csv.tmp", out / "metrics.csv")


def _load_epoch(path: Path, matcher: TokenMatcher, opt, rng) -> dict:
    from safetensors.torch import load_file

    from ..checkpoint import load_checkpoint

    meta = json.loads((path / "state.json").read_text())
    load_checkpoint(path, matcher.FORMAT, f"{matcher.NAME} checkpoint {path}").load_into(matcher)
    tensors = load_file(str(path / "state.safetensors"))
    opt.load_state_dict(_unflatten_optimizer({k: v for k, v in tensors.items() if k.startswith("optim.")},
                                             meta["optimizer"]))
    torch.set_rng_state(tensors["rng.torch"])
    rng.bit_generator.state = meta["rng_numpy"]
    return meta


def matcher_class(name: str) -> type[TokenMatcher]:
    """The :class:`TokenMatcher` subclass registered as re-ranker ``name`` (xattn, imram, wcgl)."""
    from ..registries import load_all

    load_all("reranker")
    found, todo = {}, [TokenMatcher]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if getattr(sub, "NAME", None):
                found[sub.NAME] = sub
    if name not in found:
        raise ConfigError(f"no trainable token-level re-ranker named {name!r}. Available: {', '.join(sorted(found))}")
    return found[name]


# ------------------------------------------------------------------------------------------------------ loop


def train_matcher(matcher: TokenMatcher, encoder, texts: Sequence[str], images: Sequence, text_to_item,
                  config: MatcherTrainConfig | None = None, *, sims=None, info: dict | None = None,
                  out: str | Path | None = None, resume: bool = False) -> TokenReranker:
    """Train ``matcher`` (modified in place) on the tokens of the frozen ``encoder`` and return it as a
    :class:`TokenReranker`. ``sims`` (T, I): the dual scores the hard negatives come from (default: ``encoder``'s
    own). See the module docstring for the loss, checkpoints and resume."""
    cfg = config or MatcherTrainConfig()
    loss_name = cfg.loss or matcher.default_loss
    check_token_encoder(encoder, matcher.config.width, f"training the {matcher.NAME} matcher")
    t2i = np.asarray(text_to_item, dtype=np.int64)
    n_items = len(images)
    if n_items < 2:
        raise ConfigError("training a matcher needs at least 2 images")
    if t2i.shape != (len(texts),) or (t2i < 0).any() or (t2i >= n_items).any():
        raise ConfigError(f"text_to_item must give an image index in [0, {n_items}) for each of the {len(texts)} texts")
    t0 = time.perf_counter()
    tt, tm = text_tokens(encoder, texts)
    it = image_tokens(encoder, images)
    if sims is None:
        sims = encoder.encode_text(list(texts)) @ encoder.encode_images(list(images)).T
    sims = np.asarray(sims)
    if sims.shape != (len(texts), n_items):
        raise ConfigError(f"sims is {sims.shape}; expected ({len(texts)}, {n_items}) (texts x images)")
    hard = _hard_negatives(sims, t2i, cfg.hard_k)
    state = {"train_config": asdict(cfg), "matcher": {"name": matcher.NAME, **asdict(matcher.config)},
             "history": []}
    outp = Path(out) if out is not None else None
    rng = np.random.default_rng(cfg.seed)
    groups_per_step = max(1, cfg.batch_size // (1 + cfg.negatives))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        opt = torch.optim.AdamW(matcher.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        start = 0
        if outp is not None:
            found = _checkpoints(outp)
            if found and not resume:
                raise ConfigError(f"{outp} already holds training checkpoints; pass resume=True to continue, or "
                                  "give a new folder")
            if found:
                meta = _load_epoch(found[-1][1], matcher, opt, rng)
                for key in ("train_config", "matcher"):  # epochs may grow: a resume can train longer
                    was, now = ({k: v for k, v in d[key].items() if k != "epochs"} for d in (meta, state))
                    if was != now:
                        raise ConfigError(f"cannot resume {outp}: its {key.replace('_', ' ')} {was} differs from "
                                          f"this run's {now}; use a new folder")
                start, state["history"] = int(meta["epoch"]), meta["history"]
        matcher.train()
        for epoch in range(start + 1, cfg.epochs + 1):
            te = time.perf_counter()
            groups = _draw_groups(rng, hard, t2i, n_items, cfg.negatives)  # (T, 1 + n)
            order = rng.permutation(len(groups))
            total, wins = 0.0, 0
            for s in range(0, len(order), groups_per_step):
                rows = order[s : s + groups_per_step]
                g = torch.as_tensor(groups[rows])  # (G, 1 + n)
                ti = torch.as_tensor(rows).repeat_interleave(g.shape[1])
                scores = matcher(tt[ti], tm[ti], it[g.reshape(-1)]).reshape(g.shape)
                loss = group_loss(scores, loss_name, cfg.margin)
                extra = matcher.extra_loss()
                if extra is not None and cfg.extra_weight:
                    loss = loss + cfg.extra_weight * extra
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(rows)
                wins += int((scores[:, :1] > scores[:, 1:]).all(dim=1).sum())
            state["history"].append({"epoch": epoch, "loss": round(total / len(order), 6),
                                     "pair_acc": round(wins / len(order), 4),
                                     "seconds": round(time.perf_counter() - te, 3)})
            if outp is not None:
                _save_epoch(outp, epoch, matcher, opt, rng, state)
        matcher.eval()
    last = state["history"][-1] if state["history"] else {}
    meta = {"texts": len(texts), "images": n_items, "loss": loss_name, "negatives": cfg.negatives,
            "hard_k": cfg.hard_k, "epochs": cfg.epochs, "lr": cfg.lr, "seed": cfg.seed,
            "final_loss": last.get("loss"), "final_pair_acc": last.get("pair_acc"),
            "resumed_from_epoch": start or None, "train_s": round(time.perf_counter() - t0, 2), **(info or {})}
    if outp is not None:
        matcher.save(outp, meta)  # the final matcher, loadable as NAME:OUT
    return TokenReranker(matcher, encoder, meta)


__all__ = ["LOSSES", "MatcherTrainConfig", "group_loss", "matcher_class", "train_matcher"]
