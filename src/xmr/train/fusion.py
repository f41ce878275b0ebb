"""Training an expert fuser (LAFF, MMT; :mod:`xmr.experts.fusers`) on (query vector, item) pairs.

The frozen index model gives every input: a caption's text embedding is the query, an item is its visual vector
plus its expert rows (:func:`xmr.experts.fusers.pack_items`). The fuser is trained with its paper's ranking loss
(``fuser.loss`` on the in-batch (B, B) score matrix; a batch never holds two queries of the same item, so no
positive is used as a negative), AdamW, a fixed number of epochs. :func:`items_from_index` reads the tokens of
an index's items (the same rows the experts stage reads at search time), ``xmr train-fusion`` drives both.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from ..experts.fusers import ItemTokens, create_fuser, pack_items

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FusionTrainConfig:
    fuser: str = "laff"  # EXPERT_FUSERS name
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    fuser_config: dict = field(default_factory=dict)  # the fuser's Config fields (hidden, heads, max_rows, ...)

    LIMITS: ClassVar[dict] = {"epochs": (1, 100000), "batch_size": (2, 65536), "lr": (0, 10), "weight_decay": (0, 10)}


def train_fuser(cfg: FusionTrainConfig, queries: np.ndarray, targets: np.ndarray, tokens: ItemTokens,
                experts: list[str], encoder: str = "", on_epoch=None):
    """A fuser trained to rank item ``targets[j]`` (an index into ``tokens``) first for query ``queries[j]``.
    Returns (fuser in eval mode, history: one dict per epoch with the mean loss)."""
    import torch

    q = np.asarray(queries, np.float32)
    t = np.asarray(targets, np.int64)
    n_items = tokens.x.shape[0]
    if q.ndim != 2 or len(q) != len(t) or not len(q):
        raise ConfigError(f"train-fusion: need (N, dim) queries and N targets, got {q.shape} and {t.shape}")
    if t.min() < 0 or t.max() >= n_items:
        raise ConfigError(f"train-fusion: targets must index the {n_items} items")
    if len(np.unique(t)) < 2:
        raise ConfigError("train-fusion: the captions must describe at least 2 different items")
    fc = {"dim": int(q.shape[1]), "experts": tuple(experts), "encoder": encoder, "seed": cfg.seed,
          **cfg.fuser_config}
    fuser = create_fuser(cfg.fuser, **fc)
    opt = torch.optim.AdamW(fuser.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    tok = tokens.torch()
    qt = torch.from_numpy(q)
    rng = np.random.default_rng(cfg.seed)
    history = []
    fuser.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # dropout
        for epoch in range(cfg.epochs):
            t0, losses = time.time(), []
            for batch in _batches(rng.permutation(len(q)), t, cfg.batch_size):
                items = t[batch]
                scores = fuser.similarity(fuser.encode_queries(qt[batch]), fuser.encode_items(tok.take(items)))
                loss = fuser.loss(scores)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            history.append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 6),
                            "seconds": round(time.time() - t0, 3)})
            if on_epoch:
                on_epoch(history[-1])
    fuser.eval()
    return fuser, history


def _batches(order: np.ndarray, targets: np.ndarray, size: int):
    """Batches of query indices in ``order`` where no item is the target twice (a later duplicate waits for the next
    batch); batches of one are dropped (no negative)."""
    pending = list(order)
    while pending:
        batch, seen, rest = [], set(), []
        for j in pending:
            if len(batch) < size and targets[j] not in seen:
                batch.append(j)
                seen.add(targets[j])
            else:
                rest.append(j)
        if len(batch) < 2:
            return
        yield np.asarray(batch)
        pending = rest


def items_from_index(reader, item_ids: list[int], experts: list[str], max_rows: int) -> ItemTokens:
    """Tokens of ``item_ids`` as the experts stage sees them: visual vector + the first ``max_rows`` rows of each
    expert in index order (with start times)."""
    row_ids, row_items, row_experts, vecs = reader.expert_matrix()
    wanted = set(int(i) for i in item_ids)
    sel = [j for j in range(len(row_ids)) if int(row_items[j]) in wanted and row_experts[j] in experts]
    meta = reader.expert_rows([int(row_ids[j]) for j in sel]) if sel else {}
    rows: dict[int, dict] = {}
    for j in sel:
        r = meta.get(int(row_ids[j]))
        rows.setdefault(int(row_items[j]), {}).setdefault(row_experts[j], []).append(
            (vecs[j], None if r is None else r.start))
    return pack_items(reader.item_vectors(list(item_ids)), [rows.get(int(i), {}) for i in item_ids], experts, max_rows)





def read_captions(path) -> list[tuple[str, str]]:
    """(absolute media path, caption) pairs of a JSON-lines file: each line ``{"media": PATH, "caption": TEXT}`` or
    ``{"media": PATH, "captions": [TEXT, ...]}`` (``captions.jsonl`` of ``xmr synth``; paths relative to the file's
    folder)."""
    import json
    import os

    base = os.path.dirname(os.path.abspath(path))
    out = []
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        raise ConfigError(f"--captions {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--captions {path}: not UTF-8 text") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError as e:
            raise ConfigError(f"--captions {path} line {n}: not JSON ({e})") from None
        caps = d.get("captions", [d.get("caption")]) if isinstance(d, dict) else None
        if not isinstance(d, dict) or not isinstance(d.get("media"), str) or not isinstance(caps, list) or not all(
                isinstance(c, str) and c.strip() for c in caps):
            raise ConfigError(f"--captions {path} line {n}: expected {{\"media\": PATH, \"caption\": TEXT}} or "
                              f"\"captions\": [TEXT, ...]")
        media = os.path.realpath(os.path.join(base, d["media"]))
        out += [(media, c) for c in caps]
    if not out:
        raise ConfigError(f"--captions {path}: no captions in it")
    return out


def train_from_index(index, captions, cfg: FusionTrainConfig, out, val_fraction: float = 0.2, device=None):
    """Train ``cfg.fuser`` on an index with experts and captions of its items; save it to ``out``. The captions are
    embedded with the index's model; ``val_fraction`` of the captioned items (drawn with ``cfg.seed``) are held out
    and the fuser's text -> item R@1/5/10 on them is returned with the history (``{}`` if fewer than 2)."""
    import os

    from ..encoders import create_encoder
    from ..eval.ranks import metrics_from_ranks, ranks_t2i
    from ..experts.fusers import save_fuser, scores_numpy
    from ..index.snapshot import open_reader

    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ConfigError(f"--out {out}: exists and is not an empty folder; give a new one")
    pairs = read_captions(captions)
    store, reader = open_reader(index)
    try:
        experts = reader.expert_names()
        if not experts:
            raise ConfigError(f"index {index} carries no experts: build it with xmr index DIR --experts NAMES")
        if reader.model_spec is None:
            raise ConfigError(f"index {index} is empty; run xmr index DIR first")
        by_path = {}
        for root, _ in store.roots():
            by_path.update({os.path.realpath(p): r.id for p, r in store.items_under(root).items()})
        kept = [(by_path[m], c) for m, c in pairs if m in by_path]
        if len(kept) < len(pairs):
            missing = next(m for m, _ in pairs if m not in by_path)
            log.warning("%d of %d captions name files not in the index (e.g. %s); they are left out",
                        len(pairs) - len(kept), len(pairs), missing)
        ids = sorted({i for i, _ in kept})
        if len(ids) < 2:
            raise ConfigError(f"--captions {captions}: fewer than 2 of its files are in index {index}")
        rng = np.random.default_rng(cfg.seed)
        n_val = int(round(val_fraction * len(ids))) if len(ids) * val_fraction >= 2 else 0
        val = set(rng.choice(ids, n_val, replace=False).tolist()) if n_val else set()
        max_rows = int(cfg.fuser_config.get("max_rows", 4))
        tokens = items_from_index(reader, ids, experts, max_rows)
        pos = {i: k for k, i in enumerate(ids)}
        enc = create_encoder(reader.model_spec, device=device)
        q = np.asarray(enc.encode_text([c for _, c in kept]), np.float32)
        t = np.array([pos[i] for i, _ in kept])
        is_val = np.array([i in val for i, _ in kept])
        fuser, hist = train_fuser(cfg, q[~is_val], t[~is_val], tokens, experts, encoder=reader.model_spec)
        metrics = {}
        if val:
            vi = np.array(sorted(pos[i] for i in val))
            remap = {int(k): j for j, k in enumerate(vi)}
            s = scores_numpy(fuser, q[is_val], tokens.take(vi))
            m = metrics_from_ranks(ranks_t2i(s, np.array([remap[int(k)] for k in t[is_val]])), ks=(1, 5, 10))
            metrics = {k: round(float(m[k]), 2) for k in ("R@1", "R@5", "R@10", "MdR")}
        save_fuser(fuser, out, training={"index": str(index), "captions": str(captions), "pairs": int((~is_val).sum()),
                                         "held_out_items": len(val), "held_out": metrics, "epochs": cfg.epochs,
                                         "lr": cfg.lr, "batch_size": cfg.batch_size, "seed": cfg.seed})
        return fuser, hist, metrics
    finally:
        store.close()

__all__ = ["FusionTrainConfig", "items_from_index", "read_captions", "train_from_index", "train_fuser"]
