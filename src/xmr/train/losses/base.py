"""What every training loss sees and may do: :class:`Batch` (one step's embeddings and inputs), :class:`EpochContext`
(the whole training set, for losses that look at every pair between epochs) and :class:`TrainLoss` (the interface).

A loss is an ``nn.Module``: its parameters (a learnable temperature, a peer network) are trained with the model's,
and its state (momentum encoders, queues, a clean/noisy split) is saved with every checkpoint, so a resumed run
continues exactly where the killed one stopped.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Callable, ClassVar

import torch
from torch import nn

from ...config import config_from_dict


@dataclass
class TeacherBatch:
    """One frozen teacher's embeddings of a step's pairs (cached once per data set item, see
    :mod:`xmr.train.teachers`). Widths differ between teachers: only similarities are compared."""

    spec: str  # the teacher's encoder spec
    txt: torch.Tensor  # (B, D_k) its L2-normalised embeddings of the batch's captions
    img: torch.Tensor | None = None  # (B, D_k) its embeddings of the batch's images; None: a text-only teacher


@dataclass
class Batch:
    """One optimisation step. Row ``b`` of every tensor is one (image, caption) training pair."""

    img: torch.Tensor  # (B, d) L2-normalised image embeddings from the model being trained (with grad)
    txt: torch.Tensor  # (B, d) L2-normalised caption embeddings (with grad)
    index: torch.Tensor  # (B,) int64 pair ids (caption indices into the training set), for per-sample state
    img_in: torch.Tensor  # (B, ...) the model's image inputs (frozen features or pixels): for momentum / peer nets
    txt_in: torch.Tensor  # (B, ...) the model's caption inputs (frozen features or token ids)
    item: torch.Tensor | None = None  # (B,) int64 image index of each pair (other captions of one image share it)
    labels: torch.Tensor | None = None  # (B,) int64 class ids of the images (label-noise losses)
    txt_ref: torch.Tensor | None = None  # (B, D) frozen caption features: a fixed text space (neighbourhoods)
    epoch: int = 0  # 0-based epoch
    teachers: tuple[TeacherBatch, ...] = ()  # frozen teachers' embeddings of this batch (losses that need "teachers")


@dataclass(frozen=True)
class LossInfo:
    """What a loss may size its state by, given at construction."""

    num_pairs: int  # training pairs (captions); pair ids run 0 .. num_pairs - 1
    dim: int  # embedding width
    num_classes: int = 0  # distinct class labels of the images (0: the dataset has none)
    seed: int = 0  # the run's seed (initialisation of any state the loss owns)
    texts: tuple[str, ...] = ()  # the training captions in pair-id order (losses that read words: CODER's concepts)


@dataclass
class EpochContext:
    """Given to :meth:`TrainLoss.on_epoch_start`."""

    epoch: int  # 0-based epoch about to start
    epochs: int  # total epochs of the run
    seed: int  # the run's seed
    model: nn.Module  # the network being trained (unwrapped)
    embed_all: Callable[[nn.Module], tuple[torch.Tensor, torch.Tensor]]  # net -> (img (P, d), txt (P, d)) of every pair
    num_pairs: int  # P: pair id p is caption p with its image
    pair_item: torch.Tensor  # (P,) int64 image index of each pair (pairs of one image are not negatives of each other)
    noisy_truth: torch.Tensor | None = None  # (P,) bool: pairs known to be corrupted (synthetic data), for logs only


class TrainLoss(nn.Module, ABC):
    """Base class. Subclasses set ``Config`` (a frozen dataclass of hyper-parameters), ``needs`` and implement
    :meth:`forward`; momentum / co-training losses also override the hooks."""

    Config: ClassVar[type]
    #: what a batch must carry beyond embeddings: "labels" (class ids), "txt_ref" (frozen caption features),
    #: "teachers" (frozen teacher encoders' embeddings: ``xmr train --teachers``)
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config, model: nn.Module, info: LossInfo):
        super().__init__()
        self.config = config
        self.info = info

    @classmethod
    def from_dict(cls, d: dict | None, model: nn.Module, info: LossInfo) -> "TrainLoss":
        return cls(config_from_dict(cls.Config, d or {}), model, info)

    def config_dict(self) -> dict:
        return asdict(self.config)

    @abstractmethod
    def forward(self, b: Batch, model: nn.Module) -> tuple[torch.Tensor, dict[str, float]]:
        """-> (scalar loss, logs: name -> float for the metrics CSV)."""

    def on_epoch_start(self, ctx: EpochContext) -> dict[str, float]:
        """Called before each epoch (also the first); returns logs."""
        return {}

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """Called after each optimiser step (momentum updates)."""

    def export_heads(self) -> dict[str, tuple[dict, nn.Module]]:
        """Heads this loss trains that the saved model keeps (``{kind: (config, module)}``, see
        :func:`xmr.encoders.trained.build_head`): PCME's uncertainty heads, DHD's hash heads. Default: none."""
        return {}


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with ``requires_grad=False`` everywhere (momentum encoders)."""
    m = copy.deepcopy(model)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


@torch.no_grad()
def ema_update(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """``target = m * target + (1 - m) * source``, parameter by parameter (MoCo's momentum update)."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)


def symmetric_ce(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the row-wise and column-wise cross-entropies of a square (B, B) logit matrix against its diagonal."""
    target = torch.arange(logits.shape[0], device=logits.device)
    return (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)) / 2
