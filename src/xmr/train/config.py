""":class:`TrainConfig`: everything that decides what ``xmr train`` computes (saved in every checkpoint; a resumed
run must use the same one, except for a larger ``epochs``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..config import config_from_dict
from ..errors import ConfigError

MODES = ("adapter", "full", "finetune")
PRECISIONS = ("no", "fp16", "bf16")
DEFAULT_FRAMES = 4  # frames per clip of a video run when --frames is not given


@dataclass(frozen=True)
class TrainConfig:
    dataset: str  # training data set spec, e.g. manifest:synth/captions.jsonl or coco:DIR
    model: str = "concept"  # adapter: the frozen encoder; full: tiny or tiny:<dir> (the start); finetune: hf:/openclip:
    mode: str = "adapter"  # adapter: heads on frozen towers (feature cache); full: every weight of a tiny model;
    # finetune: an hf: / openclip: model's own weights (all, the last blocks, the projections, or LoRA)
    loss: str = "infonce"  # a registered loss (xmr.registries.LOSSES)
    loss_config: dict = field(default_factory=dict)  # the loss's Config fields
    split: str | None = "train"  # training split (None: every item)
    eval_dataset: str | None = None  # evaluation data set spec (None: the training one)
    eval_split: str | None = "test"  # evaluation split (None: no evaluation)
    captions: str = "all"  # caption policy of the training split (all, first, firstN)
    protocol: str = "standard"  # xmr evaluation protocol of the per-epoch evaluation
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0  # model initialisation, batch order and every loss's state
    precision: str = "no"  # mixed precision (Accelerate): no, fp16 (CUDA), bf16
    adapter_hidden: int = 256  # adapter bottleneck width
    adapter_residual: bool = True  # residual adapters (start from the frozen model) or projection heads
    adapter_dim: int = 0  # projection output width (non-residual only; 0: the frozen width)
    tiny: dict = field(default_factory=dict)  # TinyConfig overrides for mode full from `tiny` (e.g. image_size)
    finetune: str = "whole"  # mode finetune: whole, last:N, projections or lora (xmr.train.finetune)
    lora: dict = field(default_factory=dict)  # mode finetune, lora: LoraSettings fields (r, alpha, dropout, target_modules)
    teachers: tuple[str, ...] = ()  # frozen teacher encoder specs (losses that distil them, e.g. teachtext)
    frames: int | None = None  # video data sets (mode full): frames per clip, spread uniformly (None: 4); an image
    # run given frames is refused (xmr.train.loop), never silently ignored

    def __post_init__(self):
        if isinstance(self.teachers, str) or not all(isinstance(t, str) for t in self.teachers):
            raise ConfigError(f"teachers must be a list of encoder specs, got {self.teachers!r}")
        object.__setattr__(self, "teachers", tuple(self.teachers))  # a JSON list read back compares equal
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.mode == "finetune":
            from .finetune import parse_how

            parse_how(self.finetune)
        elif self.finetune != "whole":
            raise ConfigError(f"--finetune {self.finetune} applies to --mode finetune (got --mode {self.mode})")
        if self.lora and (self.mode != "finetune" or self.finetune != "lora"):
            raise ConfigError("--lora settings apply to --mode finetune --finetune lora only")
        if self.frames is not None and not 1 <= self.frames <= 256:
            raise ConfigError(f"--frames must be in 1..256, got {self.frames}")
        if self.epochs < 1 or self.batch_size < 2 or self.lr <= 0:
            raise ConfigError(f"need epochs >= 1, batch size >= 2 and lr > 0 (got {self.epochs}, {self.batch_size}, "
                              f"{self.lr})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return config_from_dict(cls, d)

    @property
    def clip_frames(self) -> int:
        """Frames per clip of a video run (``frames``, default 4)."""
        return DEFAULT_FRAMES if self.frames is None else int(self.frames)

    def differences(self, other: "TrainConfig", ignore=("epochs",)) -> list[str]:
        def value(cfg, name):  # checkpoints written before frames became optional stored the default 4
            return cfg.clip_frames if name == "frames" else getattr(cfg, name)

        return [f.name for f in fields(self) if f.name not in ignore and value(self, f.name) != value(other, f.name)]


__all__ = ["MODES", "PRECISIONS", "TrainConfig"]
