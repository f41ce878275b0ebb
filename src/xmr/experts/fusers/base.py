"""What every trainable expert fuser shares (registry :data:`xmr.registries.EXPERT_FUSERS`).

An item of an index with experts is a set of *tokens* in the index model's space: its visual vector (type 0) and,
per expert ``e`` (type ``1 + experts.index(e)``), up to ``max_rows`` of its rows (scene text, side text, subtitle
cues; the first ``max_rows`` in index order, each with its start time when it has one). A fuser maps a query
vector ``q`` (the model's text embedding) and these tokens to a score; unlike the fixed rules of the experts stage
(vista / max / sum) its parameters are trained (:mod:`xmr.train.fusion`, ``xmr train-fusion``).

:func:`pack_items` builds the padded arrays (:class:`ItemTokens`) from numpy; the same function is used by the
trainer, the benchmark and the experts stage at search time, so an item is seen the same way in all three. A fuser
is an ``nn.Module`` with ``encode_queries(q) -> Q``, ``encode_items(tokens) -> V``, ``similarity(Q, V) -> (B, I)``
and ``contributions(Q, V) -> (B, I, 1 + E)`` (each source's share of the score, for the result's ``match``;
optionally ``source_weights(Q, V) -> (B, I, 1 + E)``, the weights it fuses the sources with, shown per result);
saved as ``config.json`` (format ``xmr-expert-fuser``) + ``model.safetensors``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from ...errors import ConfigError

FORMAT = "xmr-expert-fuser"
VISUAL = "visual"


@dataclass(frozen=True)
class FuserConfig:
    """Fields every fuser has; a fuser's own ``Config`` subclass adds its fields."""

    dim: int = 64  # width of the index's vectors (visual and expert rows) and of the query
    experts: tuple[str, ...] = ()  # expert names in type order (the visual vector is type 0)
    hidden: int = 128  # width of the fused space
    max_rows: int = 4  # rows kept per (item, expert), the first ones in index order
    encoder: str = ""  # spec of the model whose space the fuser was trained in ("" in tests)
    seed: int = 0  # initialisation seed (the global torch RNG is left untouched)
    identity_init: bool = True  # start every per-source projection at the identity (hidden >= dim; a shared
    #                             random projection when narrower): the inputs already are in the model's joint space

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"dim": (1, 16384), "hidden": (1, 8192), "max_rows": (1, 256)}

    def __post_init__(self):
        if len(set(self.experts)) != len(self.experts) or VISUAL in self.experts:
            raise ConfigError(f"{type(self).__name__}: experts must be distinct names other than {VISUAL!r}, got "
                              f"{list(self.experts)}")
        object.__setattr__(self, "experts", tuple(self.experts))

    @property
    def sources(self) -> tuple[str, ...]:
        return (VISUAL, *self.experts)


@dataclass
class ItemTokens:
    """Padded tokens of ``I`` items (numpy or torch): ``x`` (I, T, dim) vectors, ``kind`` (I, T) source index
    (0 visual, 1 + e expert e), ``time`` (I, T) start seconds (-1: none), ``mask`` (I, T) True for a real token."""

    x: object
    kind: object
    time: object
    mask: object

    def torch(self):
        import torch

        return ItemTokens(torch.as_tensor(np.asarray(self.x, np.float32)), torch.as_tensor(self.kind).long(),
                          torch.as_tensor(np.asarray(self.time, np.float32)), torch.as_tensor(self.mask).bool())

    def take(self, idx):
        return ItemTokens(self.x[idx], self.kind[idx], self.time[idx], self.mask[idx])


def pack_items(visual: np.ndarray, rows: Sequence[dict], experts: Sequence[str], max_rows: int) -> ItemTokens:
    """Tokens of items: ``visual`` (I, dim) and ``rows[i]`` = ``{expert: [(vector (dim,), start or None), ...]}``
    in index order (experts not in ``experts`` are ignored; the first ``max_rows`` rows of each are kept)."""
    visual = np.asarray(visual, np.float32)
    n, dim = visual.shape
    if len(rows) != n:
        raise ConfigError(f"pack_items: {n} visual vectors but {len(rows)} row sets")
    code = {e: k + 1 for k, e in enumerate(experts)}
    width = 1 + max((sum(min(len(v), max_rows) for e, v in r.items() if e in code) for r in rows), default=0)
    x = np.zeros((n, width, dim), np.float32)
    kind = np.zeros((n, width), np.int64)
    time = np.full((n, width), -1.0, np.float32)
    mask = np.zeros((n, width), bool)
    x[:, 0], mask[:, 0] = visual, True
    for i, r in enumerate(rows):
        t = 1
        for e in experts:
            for vec, start in list(r.get(e, ()))[:max_rows]:
                x[i, t], kind[i, t], mask[i, t] = vec, code[e], True
                time[i, t] = -1.0 if start is None else float(start)
                t += 1
    return ItemTokens(x, kind, time, mask)


def projection_init(n: int, dim: int, hidden: int, identity: bool, generator=None):
    """(n, dim, hidden) initial per-source projections: with ``identity``, the identity padded with zeros when
    ``hidden >= dim`` and, when it is narrower, a Gaussian projection of variance ``1 / hidden`` (Johnson-Lindenstrauss:
    cosines kept approximately, where truncating the identity would drop ``dim - hidden`` coordinates); the same
    projection for every source, so sources stay comparable. Without ``identity``: Gaussian of variance ``1 / dim``."""
    import torch

    if identity and hidden >= dim:
        return torch.eye(dim, hidden).expand(n, dim, hidden).clone()
    if identity:
        return (torch.randn(dim, hidden, generator=generator) * hidden ** -0.5).expand(n, dim, hidden).clone()
    return torch.randn(n, dim, hidden, generator=generator) * dim ** -0.5


def present(tokens: ItemTokens, n_sources: int):
    """(I, n_sources) bool torch: which sources an item has at least one token of."""
    import torch.nn.functional as F

    onehot = F.one_hot(tokens.kind, n_sources).bool() & tokens.mask[..., None]
    return onehot.any(1)


def _run_fuser(fuser, q: np.ndarray, tokens: ItemTokens, contributions: bool, weights: bool):
    """(scores (B, I), contributions (B, I, S) or None, weights (B, I, S) or None) in eval mode, no grad."""
    import torch

    q = np.asarray(q, np.float32)
    if q.ndim != 2 or q.shape[1] != fuser.config.dim:
        raise ConfigError(f"fuser {fuser.name}: queries must be (B, {fuser.config.dim}), got {q.shape}")
    was = fuser.training
    fuser.eval()
    try:
        with torch.no_grad():
            Q, V = fuser.encode_queries(torch.from_numpy(q)), fuser.encode_items(tokens.torch())
            s = fuser.similarity(Q, V).numpy().astype(np.float32)
            c = fuser.contributions(Q, V).numpy().astype(np.float32) if contributions else None
            sw = getattr(fuser, "source_weights", None) if weights else None
            w = sw(Q, V).numpy().astype(np.float32) if sw is not None else None
    finally:
        fuser.train(was)
    return s, c, w


def scores_numpy(fuser, q: np.ndarray, tokens: ItemTokens, contributions: bool = False):
    """(B, I) float32 scores of queries ``q`` (B, dim) against items (and (B, I, S) contributions if asked)."""
    s, c, _ = _run_fuser(fuser, q, tokens, contributions, False)
    return (s, c) if contributions else s


def fuse_numpy(fuser, q: np.ndarray, tokens: ItemTokens):
    """(scores (B, I), contributions (B, I, S), weights (B, I, S) or None) of queries ``q`` against items: what the
    experts stage reports per result. ``weights`` are the fuser's ``source_weights`` (LAFF's attention, MMT's
    query-predicted weights); None for a fuser without per-source weights (``concat``)."""
    return _run_fuser(fuser, q, tokens, True, True)


def check_compatible(fuser, dim: int, spec: str | None, carried: Sequence[str]) -> None:
    """ConfigError unless ``fuser`` fits an index of width ``dim``, model ``spec`` carrying experts ``carried``."""
    c = fuser.config
    if c.dim != dim:
        raise ConfigError(f"expert fuser {fuser.directory}: trained on {c.dim}-d vectors, the index has {dim}-d ones; "
                          f"train one on this index with xmr train-fusion --index DIR")
    if c.encoder and spec and c.encoder != spec:
        raise ConfigError(f"expert fuser {fuser.directory}: trained in the space of {c.encoder!r}, the index's model "
                          f"is {spec!r}; train one on this index with xmr train-fusion --index DIR")
    missing = [e for e in c.experts if e not in carried]
    if missing:
        raise ConfigError(f"expert fuser {fuser.directory} uses expert(s) {', '.join(missing)}, which the index does "
                          f"not carry (it carries: {', '.join(carried) or 'none'})")


def save_fuser(fuser, directory: str | Path, training: dict | None = None) -> Path:
    from ...checkpoint import save_checkpoint

    cfg = asdict(fuser.config)
    cfg["experts"] = list(cfg["experts"])
    return save_checkpoint(directory, FORMAT, {"fuser": fuser.name, **cfg}, fuser,
                           extra={"training": training} if training else None)


def load_fuser(directory: str | Path):
    """The fuser saved in ``directory`` (eval mode); ModelUnavailableError / ConfigError for a bad folder."""
    from ...checkpoint import build_registered, load_checkpoint
    from ...registries import load_all

    ckpt = load_checkpoint(directory, FORMAT, f"expert fuser {directory}",
                           what="expert fuser (xmr train-fusion) folder", hint="train one with xmr train-fusion --out DIR")
    return build_registered(ckpt, load_all("expert_fuser")["expert_fuser"], "fuser", f"expert fuser {directory}",
                            "fuser", directory)


def create_fuser(name: str, **config):
    """A fresh fuser ``name`` (an EXPERT_FUSERS entry) with its Config built from ``config``."""
    from ...config import config_from_dict
    from ...registries import load_all

    cls = load_all("expert_fuser")["expert_fuser"].get(name)
    return cls(config_from_dict(cls.Config, config))


def parse_fusion(spec: str) -> tuple[str, str | None]:
    """``"vista"`` -> ("vista", None); ``"laff:DIR"`` -> ("laff", "DIR") (a trained fuser's folder)."""
    name, _, arg = spec.partition(":")
    return name.strip(), (arg.strip() or None) if _ else None


__all__ = ["FORMAT", "VISUAL", "FuserConfig", "ItemTokens", "check_compatible", "create_fuser", "fuse_numpy",
           "load_fuser", "pack_items", "parse_fusion", "present", "projection_init", "save_fuser", "scores_numpy"]
