"""Fine-tuning ``hf:`` / ``openclip:`` dual encoders (``xmr train --mode finetune``): what is trained is explicit.

``--finetune`` (:func:`parse_how`):

* ``whole`` — every weight of both towers;
* ``last:N`` — the last ``N`` transformer blocks of each tower (``*.layers`` / ``*.layer`` / ``*.resblocks``
  module lists) plus what follows them (final norms, projections, attention-pool heads); the rest is frozen;
* ``projections`` — only the projections into the shared space (``visual_projection`` / ``text_projection``, open_clip's
  ``visual.proj`` / ``text_projection``; SigLIP's text ``head``);
* ``lora`` — LoRA (Hu et al. 2022, Eq. 3: ``h = W0 x + B A x * alpha / r``, ``B`` zero-initialised so training starts
  from the pretrained model) injected by ``peft`` into the attention projections (default: ``q_proj`` + ``v_proj``,
  or BERT's ``query`` + ``value``, as the LoRA paper adapts ``W_q`` and ``W_v``; ``--lora '{"target_modules": [...]}'``
  for others). The saved model has the low-rank update merged into ``W0`` (``W0 + B A alpha / r``), so loading
  ``trained:DIR`` needs no peft.

Inputs are the checkpoint's own preprocessing, run once (images through its image processor / open_clip transform,
texts through its tokenizer with the ``hf`` encoder's text policy) and kept in memory. The model's own
``logit_scale`` / ``logit_bias`` stay frozen: the loss owns its temperature.

The saved ``trained:DIR`` holds ``base`` (the spec fine-tuned from) and the whole fine-tuned state dict; it loads by
building ``base`` and loading those weights (so ``base`` must still be loadable there).
"""
from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import config_from_dict
from ..errors import ConfigError

KINDS = ("hf", "openclip")
_BLOCK_LISTS = re.compile(r"(^|\.)(layers|layer|resblocks)$")
_HEAD = re.compile(r"(^|\.)(post_layernorm|final_layer_norm|ln_post|ln_final|visual_projection|text_projection|proj"
                   r"|head)(\.|$)")
_PROJECTIONS = re.compile(r"(^|\.)(visual_projection|text_projection)(\.|$)|^visual\.proj$|^text_model\.head\.")
_VISION_TOWERS = ("vision_model", "visual")
_FROZEN_ALWAYS = re.compile(r"(^|\.)(logit_scale|logit_bias)$")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8  # rank
    alpha: float = 16.0  # the update is scaled by alpha / r
    dropout: float = 0.0  # dropout on the LoRA branch's input
    target_modules: list = field(default_factory=list)  # module name suffixes; empty: q_proj+v_proj or query+value

    def __post_init__(self):
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ConfigError(f"--lora: need r >= 1, alpha > 0, 0 <= dropout < 1; got {asdict(self)}")


def parse_how(how: str) -> tuple[str, int]:
    """``whole`` / ``projections`` / ``lora`` -> (it, 0); ``last:N`` -> ("last", N)."""
    if how in ("whole", "projections", "lora"):
        return how, 0
    m = re.fullmatch(r"last:(\d+)", how)
    if m and int(m.group(1)) >= 1:
        return "last", int(m.group(1))
    raise ConfigError(f"--finetune {how!r}: one of whole, last:N (N >= 1 blocks per tower), projections, lora")


def _block_lists(net: nn.Module) -> dict[str, nn.ModuleList]:
    return {n: m for n, m in net.named_modules() if isinstance(m, nn.ModuleList) and len(m) and _BLOCK_LISTS.search(n)}


def select_trainable(net: nn.Module, how: str, n_blocks: int, label: str) -> list[str]:
    """Set ``requires_grad`` for ``whole`` / ``last:N`` / ``projections``; returns the trainable parameter names.
    Raises ConfigError (naming what was looked for) when the model has no such part."""
    names = [n for n, _ in net.named_parameters()]
    if how == "whole":
        keep = set(names)
    elif how == "projections":
        keep = {n for n in names if _PROJECTIONS.search(n)}
        if not keep:
            raise ConfigError(f"--finetune projections: {label} has no projection layers (visual_projection / "
                              "text_projection / visual.proj); use --finetune whole, last:N or lora")
    else:
        lists = _block_lists(net)
        if not lists:
            raise ConfigError(f"--finetune last:{n_blocks}: {label} has no transformer block lists (*.layers, "
                              "*.resblocks); use --finetune whole, projections or lora")
        vision = [n for n in lists if n.split(".")[0] in _VISION_TOWERS]
        if len(vision) != 1 or len(lists) != 2:
            raise ConfigError(f"--finetune last:{n_blocks}: {label} does not have one transformer block list per tower "
                              f"(found {sorted(lists) or 'none'}; a CNN image tower such as ALIGN's has none); use "
                              "--finetune whole, projections or lora")
        short = {n: len(m) for n, m in lists.items() if len(m) < n_blocks}
        if short:
            raise ConfigError(f"--finetune last:{n_blocks}: {label} has fewer blocks ({short}); use a smaller N or "
                              "--finetune whole")
        prefixes = tuple(f"{n}.{i}." for n, m in lists.items() for i in range(len(m) - n_blocks, len(m)))
        keep = {n for n in names if n.startswith(prefixes)}
        keep |= {n for n in names if _HEAD.search(n) and not any(n.startswith(f"{b}.") for b in lists)}
    keep = {n for n in keep if not _FROZEN_ALWAYS.search(n)}
    for n, p in net.named_parameters():
        p.requires_grad_(n in keep)
    return sorted(keep)


def _default_targets(net: nn.Module) -> list[str]:
    """q_proj + v_proj (CLIP-style attention) and / or query + value (BERT-style text towers), whichever exist."""
    linear = {n.rsplit(".", 1)[-1] for n, m in net.named_modules() if isinstance(m, nn.Linear)}
    return [t for pair in (["q_proj", "v_proj"], ["query", "value"]) if set(pair) <= linear for t in pair]


def inject_lora(net: nn.Module, settings: LoraSettings, seed: int, label: str) -> list[str]:
    """Inject LoRA layers (peft) in place, freeze everything else; returns the trainable parameter names."""
    from .._deps import require

    require("peft", "train")
    from peft import LoraConfig, inject_adapter_in_model

    targets = list(settings.target_modules) or _default_targets(net)
    if not targets:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in net.named_modules() if isinstance(m, nn.Linear)})
        raise ConfigError(f"--finetune lora: {label} has no q_proj/v_proj or query/value layers; name the layers to "
                          f"adapt with --lora '{{\"target_modules\": [...]}}' (its Linear layers: {linear[:12]})")
    cfg = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=targets,
                     bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            inject_adapter_in_model(cfg, net)
        except ValueError as e:  # peft: target modules not found / unsupported layer type
            raise ConfigError(f"--finetune lora: {label}: {e}") from None
    keep = []
    for n, p in net.named_parameters():
        p.requires_grad_("lora_" in n)
        if "lora_" in n:
            keep.append(n)
    return keep


def merged_copy(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every LoRA layer merged into its base layer and removed (the original is untouched)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    out = copy.deepcopy(net)
    for name, mod in list(out.named_modules()):
        if isinstance(mod, BaseTunerLayer):
            mod.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent_name) if parent_name else out, child, mod.get_base_layer())
    return out


class FinetuneModel(nn.Module):
    """An ``hf:`` / ``openclip:`` encoder whose towers are (partly) trained. Inputs: (B, 3, H, W) pixels from the
    checkpoint's own preprocessing and (B, K, L) int64 text inputs (K = 1: token ids; 2: ids + attention mask)."""

    mode = "finetune"

    def __init__(self, spec: str, how: str, lora: dict | None = None, seed: int = 0, device=None, encoder=None):
        super().__init__()
        from ..encoders import absolute_spec, create_encoder

        kind = spec.partition(":")[0]
        if kind not in KINDS:
            raise ConfigError(f"--mode finetune trains hf: or openclip: models, not {spec!r} (tiny: --mode full; "
                              "any encoder: --mode adapter)")
        self.kind, self.spec, self.how, self.seed = kind, absolute_spec(spec), how, seed
        self.lora = config_from_dict(LoraSettings, lora or {})
        part, n = parse_how(how)
        enc = encoder if encoder is not None else create_encoder(spec, device=None if device is None else str(device))
        self.encoder = enc  # preprocessing / tokenisation (not a module: its weights are self.net)
        self.net = enc.model
        if part == "lora":
            self.trainable = inject_lora(self.net, self.lora, seed, spec)
        else:
            self.trainable = select_trainable(self.net, part, n, spec)
        if not self.trainable:
            raise ConfigError(f"--finetune {how}: nothing of {spec} would be trained")
        self.dim = int(enc.dim)

    # ------------------------------------------------------------------ inputs (once, before training)

    def image_inputs(self, paths) -> torch.Tensor:
        from ..media.image import load_image

        out = []
        for s in range(0, len(paths), 64):
            ims = [load_image(p) for p in paths[s: s + 64]]
            if self.kind == "openclip":
                out.append(torch.stack([self.encoder.preprocess(im) for im in ims]))
                continue
            enc = self.encoder.image_processor(images=ims, return_tensors="pt")
            extra = set(enc.keys()) - {"pixel_values"}
            if extra & self.encoder._image_keys:
                raise ConfigError(f"--mode finetune: {self.spec}'s image processor also returns {sorted(extra)} "
                                  "(variable-size patches); fine-tuning needs fixed-size pixel inputs")
            out.append(enc["pixel_values"].float())
        return torch.cat(out)

    def text_inputs(self, texts) -> torch.Tensor:
        texts = list(texts)
        if self.kind == "openclip":
            return self.encoder.tokenizer(texts).long().unsqueeze(1)
        e = self.encoder
        enc = e.tokenizer(texts, padding="max_length", truncation=True, max_length=e.max_length, return_tensors="pt")
        ids = enc["input_ids"].long()
        if "attention_mask" in e._text_keys and "attention_mask" in enc:
            return torch.stack([ids, enc["attention_mask"].long()], 1)
        return ids.unsqueeze(1)

    # ------------------------------------------------------------------ forward

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "openclip":
            return F.normalize(self.net.encode_image(x), dim=-1)
        from ..encoders.hf import _pooled

        return F.normalize(_pooled(self.net.get_image_features(pixel_values=x), "image"), dim=-1)

    def encode_text(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "openclip":
            return F.normalize(self.net.encode_text(x[:, 0]), dim=-1)
        from ..encoders.hf import _pooled

        kw = {"input_ids": x[:, 0]}
        if x.shape[1] > 1:
            kw["attention_mask"] = x[:, 1]
        return F.normalize(_pooled(self.net.get_text_features(**kw), "text"), dim=-1)

    # ------------------------------------------------------------------ co-training, saving

    def fresh(self, seed: int) -> "FinetuneModel":
        """The same pretrained start, LoRA initialised with ``seed`` (for co-training losses such as NCR)."""
        return FinetuneModel(self.spec, self.how, asdict(self.lora), seed)

    def settings(self) -> dict:
        return {"base": self.spec, "finetune": self.how, "lora": asdict(self.lora) if self.how == "lora" else None}

    def describe(self) -> dict:
        return {"mode": self.mode, **self.settings(), "trainable_parameters": int(
            sum(p.numel() for p in self.net.parameters() if p.requires_grad))}

    def save(self, directory, training: dict, heads: dict | None = None):
        from ..encoders.trained import save_trained

        net = merged_copy(self.net) if self.how == "lora" else self.net
        return save_trained(directory, "finetune", self.settings(), net, training, heads)


def finetune_pairs(model: FinetuneModel, dataset, with_labels: bool = True):
    """:class:`~xmr.train.data.PairData` of ``dataset`` with the model's own pixels and text inputs."""
    from .data import build_pairs

    return build_pairs(dataset, model.image_inputs(list(dataset.media)), model.text_inputs(dataset.texts),
                       with_labels=with_labels)


def count(model: FinetuneModel) -> tuple[int, int]:
    """(trainable, total) parameters."""
    ps = list(model.net.parameters())
    return int(sum(p.numel() for p in ps if p.requires_grad)), int(sum(p.numel() for p in ps))


__all__ = ["FinetuneModel", "KINDS", "LoraSettings", "count", "finetune_pairs", "inject_lora", "merged_copy",
           "parse_how", "select_trainable"]

