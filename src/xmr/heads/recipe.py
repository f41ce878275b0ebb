"""Hierarchical recipe text tower (Salvador et al., CVPR 2021, "Revamping Cross-Modal Recipe Retrieval with
Hierarchical Transformers and Self-supervised Losses"), on a frozen encoder's sentence embeddings.

A recipe has three fields: title (one sentence), ingredients (a list), instructions (a list). The paper encodes
each field with a transformer; lists hierarchically (a transformer over each item's words, averaged, then a
transformer over the items, averaged), concatenates the three field vectors and projects them into the joint
space:

    e_f = mean_i T_f([s_f,1 ... s_f,n])_i            (s_f,i: the embedding of item i of field f)
    r   = W [e_title ; e_ingredients ; e_instructions] (the recipe embedding)
    v   = W_img x                                     (the image embedding)

trained with the bidirectional triplet loss (cosine similarity, margin ``margin`` = 0.3, every in-batch negative,
averaged over the positive pairs)

    L_pair = mean_i sum_j [m - s(v_i, r_i) + s(v_i, r_j)]_+ + [m - s(r_i, v_i) + s(r_i, v_j)]_+ / (B - 1)

plus the paper's self-supervised recipe loss: for every ordered pair of fields (a, b) a projection g_ab, and the
same triplet loss between g_ab(e_a) and e_b (eq. "L_rec"), weighted by ``rec_weight`` (paper: 1).

Deviations: the word-level transformers are replaced by the frozen sentence embeddings of the index model's text
tower (``encode_recipes``: each title / ingredient / instruction one sentence; xmr's point is a trainable tower on
top of a frozen encoder, and words-level training needs Recipe1M's scale); the image side is a linear projection
of the frozen image embedding instead of a fine-tuned ResNet-50 / ViT; the field transformers have ``layers``
layers (paper: 2) and ``heads`` heads (paper: 4). ``mode="flat"`` is the ablation baseline: the whole recipe as one
sentence embedding through a linear projection (no per-item structure).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import ClassVar, Sequence

import numpy as np

from ..errors import ConfigError

FIELDS = ("title", "ingredients", "instructions")
FORMAT = "xmr-recipe-tower"


@dataclass
class RecipeTowerConfig:
    text_dim: int  # the frozen sentence embeddings' width
    image_dim: int  # the frozen image embeddings' width
    dim: int = 256  # joint space
    layers: int = 1
    heads: int = 4
    max_items: int = 20  # items kept per list field (the paper keeps 20 ingredients / instructions)
    mode: str = "hierarchical"  # or "flat" (whole-recipe sentence embedding + linear)
    margin: float = 0.3
    rec_weight: float = 1.0
    LIMITS: ClassVar[dict] = {"text_dim": (1, 8192), "image_dim": (1, 8192), "dim": (2, 4096), "layers": (1, 12),
                              "heads": (1, 32), "max_items": (1, 512), "margin": (0.0, 2.0), "rec_weight": (0.0, 100.0)}

    def __post_init__(self):
        if self.mode not in ("hierarchical", "flat"):
            raise ConfigError(f"recipe tower mode {self.mode!r}: use hierarchical or flat")
        if self.dim % self.heads:
            raise ConfigError(f"recipe tower dim {self.dim} is not a multiple of heads {self.heads}")


@dataclass
class RecipeBatch:
    """Sentence embeddings of recipes, padded: per field ``x[f]`` (N, L_f, D) float32 and ``mask[f]`` (N, L_f) bool
    (True = a real item); ``flat`` (N, D): the whole recipe's embedding (the flat baseline)."""

    x: dict
    mask: dict
    flat: np.ndarray

    def __len__(self):
        return len(self.flat)

    def take(self, idx) -> "RecipeBatch":
        return RecipeBatch({f: v[idx] for f, v in self.x.items()}, {f: v[idx] for f, v in self.mask.items()},
                           self.flat[idx])


def recipe_text(r: dict) -> str:
    return f"{r['title']}. Ingredients: {'; '.join(r['ingredients'])}. {' '.join(r['instructions'])}"


def encode_recipes(encoder, recipes: Sequence[dict], max_items: int = 20) -> RecipeBatch:
    """Every distinct sentence (titles, ingredients, instructions, whole recipes) through ``encoder.encode_text``
    once; ``recipes``: dicts with ``title`` (str), ``ingredients`` and ``instructions`` (lists of str)."""
    for j, r in enumerate(recipes):
        if not isinstance(r.get("title"), str) or not all(isinstance(r.get(f), (list, tuple)) for f in FIELDS[1:]):
            raise ConfigError(f"recipe {j}: needs 'title' (text) and 'ingredients', 'instructions' (lists of text)")
    lists = {f: [([r["title"]] if f == "title" else list(r[f])[:max_items]) or [""] for r in recipes] for f in FIELDS}
    flat_texts = [recipe_text(r) for r in recipes]
    uniq = list(dict.fromkeys([s for f in FIELDS for items in lists[f] for s in items] + flat_texts))
    vec = encoder.encode_text(uniq, show_progress=False) if uniq else np.zeros((0, 1), np.float32)
    pos = {s: i for i, s in enumerate(uniq)}
    d = vec.shape[1]
    x, mask = {}, {}
    for f in FIELDS:
        L = max(len(items) for items in lists[f])
        x[f] = np.zeros((len(recipes), L, d), np.float32)
        mask[f] = np.zeros((len(recipes), L), bool)
        for i, items in enumerate(lists[f]):
            for k, s in enumerate(items):
                if s:
                    x[f][i, k], mask[f][i, k] = vec[pos[s]], True
    return RecipeBatch(x, mask, vec[[pos[s] for s in flat_texts]].astype(np.float32))


def _build(cfg: RecipeTowerConfig):
    import torch
    from torch import nn

    class FieldEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(cfg.text_dim, cfg.dim)
            layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 2 * cfg.dim, dropout=0.1, batch_first=True)
            self.tf = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)

        def forward(self, x, mask):  # mean over the real items of the transformer's outputs
            any_item = mask.any(1, keepdim=True)
            mask = mask | ~any_item  # an empty field attends to its padding (then zeroed)
            h = self.tf(self.inp(x), src_key_padding_mask=~mask)
            m = mask.unsqueeze(-1).float()
            return (h * m).sum(1) / m.sum(1).clamp_min(1) * any_item.float()

    class RecipeTower(nn.Module):
        def __init__(self):
            super().__init__()
            if cfg.mode == "hierarchical":
                self.fields = nn.ModuleDict({f: FieldEncoder() for f in FIELDS})
                self.merge = nn.Linear(3 * cfg.dim, cfg.dim)
                self.rec = nn.ModuleDict({f"{a}_{b}": nn.Linear(cfg.dim, cfg.dim)
                                          for a in FIELDS for b in FIELDS if a != b})
            else:
                self.flat = nn.Sequential(nn.Linear(cfg.text_dim, cfg.dim), nn.ReLU(), nn.Linear(cfg.dim, cfg.dim))
            self.image = nn.Linear(cfg.image_dim, cfg.dim)

        def recipe(self, x, mask, flat):
            if cfg.mode == "flat":
                return nn.functional.normalize(self.flat(flat), dim=-1), {}
            parts = {f: self.fields[f](x[f], mask[f]) for f in FIELDS}
            return nn.functional.normalize(self.merge(torch.cat([parts[f] for f in FIELDS], -1)), dim=-1), parts

        def img(self, v):
            return nn.functional.normalize(self.image(v), dim=-1)

    return RecipeTower()


def triplet_all(a, b, margin: float):
    """Bidirectional triplet loss over every in-batch negative (cosine similarities; rows of a and b unit)."""
    import torch

    s = a @ b.T
    pos = s.diag().unsqueeze(1)
    off = ~torch.eye(len(s), dtype=torch.bool, device=s.device)
    l1 = ((margin - pos + s).clamp_min(0) * off).sum(1)
    l2 = ((margin - pos.T + s).clamp_min(0) * off).sum(0)
    return (l1 + l2).mean() / max(len(s) - 1, 1)


@dataclass
class RecipeTower:
    """A trained tower: ``encode_recipes`` / ``encode_images`` give unit vectors in the joint space."""

    config: RecipeTowerConfig
    model: object
    info: dict = field(default_factory=dict)

    def encode_recipes(self, batch: RecipeBatch) -> np.ndarray:
        import torch

        self.model.eval()
        with torch.no_grad():
            x = {f: torch.from_numpy(v) for f, v in batch.x.items()}
            m = {f: torch.from_numpy(v) for f, v in batch.mask.items()}
            return self.model.recipe(x, m, torch.from_numpy(batch.flat))[0].numpy()

    def encode_images(self, v: np.ndarray) -> np.ndarray:
        import torch

        self.model.eval()
        with torch.no_grad():
            return self.model.img(torch.from_numpy(np.asarray(v, np.float32))).numpy()

    def save(self, directory) -> None:
        from ..checkpoint import save_checkpoint

        save_checkpoint(directory, FORMAT, {k: v for k, v in asdict(self.config).items()}, self.model,
                        extra={"training": self.info})

    @classmethod
    def load(cls, directory) -> "RecipeTower":
        from ..checkpoint import load_checkpoint, load_state
        from ..config import config_from_dict

        ck = load_checkpoint(directory, FORMAT, f"recipe tower {directory}", what="recipe tower")
        info = ck.config.pop("training", {})
        cfg = config_from_dict(RecipeTowerConfig, ck.config)
        model = load_state(_build(cfg), ck.state_dict(), f"recipe tower {directory}")
        return cls(cfg, model, info)


def train_recipe_tower(batch: RecipeBatch, images: np.ndarray, config: RecipeTowerConfig, *, epochs: int = 30,
                       batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> RecipeTower:
    """Adam on L_pair + rec_weight * L_rec (module docstring) over (recipe, image) pairs ``batch[i]`` <-> ``images[i]``."""
    import torch

    if len(batch) != len(images) or len(batch) < 2:
        raise ConfigError(f"recipe tower training needs >= 2 (recipe, image) pairs, got {len(batch)} recipes and "
                          f"{len(images)} images")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _build(config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    img = torch.from_numpy(np.asarray(images, np.float32))
    t0, losses = time.perf_counter(), []
    for _ in range(epochs):
        model.train()
        order = rng.permutation(len(batch))
        total = 0.0
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            if len(idx) < 2:
                continue
            b = batch.take(idx)
            x = {f: torch.from_numpy(v) for f, v in b.x.items()}
            m = {f: torch.from_numpy(v) for f, v in b.mask.items()}
            r, parts = model.recipe(x, m, torch.from_numpy(b.flat))
            loss = triplet_all(model.img(img[idx]), r, config.margin)
            if parts and config.rec_weight > 0:
                norm = {f: torch.nn.functional.normalize(p, dim=-1) for f, p in parts.items()}
                rec = [triplet_all(torch.nn.functional.normalize(model.rec[f"{a}_{b2}"](parts[a]), dim=-1), norm[b2],
                                   config.margin) for a in FIELDS for b2 in FIELDS if a != b2]
                loss = loss + config.rec_weight * torch.stack(rec).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        losses.append(total)
    return RecipeTower(config, model, {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                                       "pairs": len(batch), "seconds": round(time.perf_counter() - t0, 2),
                                       "loss_first": losses[0], "loss_last": losses[-1]})


__all__ = ["RecipeTowerConfig", "RecipeBatch", "RecipeTower", "encode_recipes", "train_recipe_tower", "triplet_all",
           "FIELDS"]
