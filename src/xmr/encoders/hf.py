"""``hf:<hub id or local dir>``: CLIP-family dual encoders from Hugging Face transformers.

Covers the model types whose ``AutoModel`` has ``get_text_features`` and ``get_image_features``: CLIP, MetaCLIP 2,
SigLIP, SigLIP 2, ALIGN, AltCLIP, Chinese-CLIP. What differs between them (how text must be tokenised) lives in
:data:`MODEL_TYPES`, one line per type.

Loading is local-first and never waits on a dead network:

1. a local directory (``save_pretrained`` output, or ``hf download ID --local-dir DIR``) is loaded with
   ``local_files_only=True``;
2. a hub id is looked up in the local Hugging Face cache first (``local_files_only=True``, no network);
3. only if it is not cached and ``HF_HUB_OFFLINE`` is not set, one short request (5 s timeout, no retries) checks
   that the Hub is reachable and the id exists, and then transformers downloads it.

Anything else raises :class:`~xmr.errors.ModelUnavailableError` saying how to get the model. Without that probe,
huggingface_hub retries an unreachable Hub for ~25 s per file before giving up.

Images go through the checkpoint's own image processor with the PIL backend, so preprocessing needs no torchvision
and does not change when torchvision happens to be installed.

Patch tokens (:meth:`HFEncoder.encode_image_tokens`, for heads such as TS2-Net) exist for ViT towers with a class
token pooled through ``post_layernorm`` (CLIP, MetaCLIP 2, AltCLIP, Chinese-CLIP); SigLIP / SigLIP 2 (attention-pool
head, no class token) and ALIGN (a CNN) refuse them with :class:`~xmr.errors.ConfigError`.
"""
from __future__ import annotations

import inspect
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..errors import ConfigError, MissingExtraError, ModelUnavailableError, XmrError
from ..media.image import ImageLike, load_image
from . import ENCODERS
from ._device import resolve_device
from .base import Capabilities, Encoder

log = logging.getLogger(__name__)

#: seconds the Hub reachability probe may take before the model is declared unavailable
HUB_PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class TextPolicy:
    """How one model type's text must be tokenised: the way it was trained."""

    padding: bool | str = True  # True: pad to the longest text in the batch; "max_length": always max_length tokens
    max_length: int | None = None  # token budget; None: min(tokenizer limit, text position embeddings)
    input_keys: tuple[str, ...] | None = None  # tokenizer outputs passed to the model; None: all it accepts


#: model_type -> text policy. Types not listed still load when the model has get_text/image_features (default
#: policy, logged), so a new CLIP-like type works without a code change.
MODEL_TYPES: dict[str, TextPolicy] = {
    "clip": TextPolicy(),
    "metaclip_2": TextPolicy(),
    "chinese_clip": TextPolicy(),
    "altclip": TextPolicy(),
    "align": TextPolicy(padding="max_length", max_length=64),  # AlignProcessor's defaults
    # SigLIP (big_vision) was trained on fixed 64-token texts pooled at the last position, with no attention mask
    "siglip": TextPolicy(padding="max_length", max_length=64, input_keys=("input_ids",)),
    "siglip2": TextPolicy(padding="max_length", max_length=64, input_keys=("input_ids",)),
}

#: video heads that work on pooled (B, T, D) frame vectors, offered when patch tokens are unavailable
VECTOR_HEADS = ("mean", "seqtransf", "xpool", "prototypes")


class PatchTokensUnavailable(ConfigError, AttributeError):
    """This model has no class-token patch tokens. Also an AttributeError, so ``hasattr(enc, "token_width")`` is
    False (and ``getattr(enc, "token_width", None)`` is None) for such models, while direct access explains why."""


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


#: text languages by model type (default: English, as CLIP / SigLIP / ALIGN were trained)
_LANGUAGES = {"chinese_clip": ("zh",), "altclip": ("*",)}


class HFEncoder(Encoder):
    """A transformers dual encoder. Build it with :meth:`load` (or ``create_encoder("hf:...")``).

    Capabilities: CLIP-style ViTs expose class-token patch tokens; an instance whose tower has none (SigLIP, ALIGN)
    narrows ``capabilities.patch_tokens`` to False when it is built."""

    capabilities = Capabilities(patch_tokens=True)

    def __init__(self, model, tokenizer, image_processor, device: str | torch.device | None = None, source: str = ""):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.source = source
        self.model_type = model.config.model_type
        self.policy = MODEL_TYPES.get(self.model_type, TextPolicy())
        self.max_length = _max_length(self.policy, tokenizer, model.config)
        accepted_text = _accepted_args(model.get_text_features)
        self._text_keys = set(self.policy.input_keys or accepted_text) & accepted_text
        self._image_keys = _accepted_args(model.get_image_features)
        # one tiny forward per tower: finds dim, and fails now (not mid-index) if the towers disagree
        with torch.no_grad():
            t = self._encode_text_batch(["a photo"])
            i = self._encode_image_batch([Image.new("RGB", (64, 64), (127, 127, 127))])
        if t.shape[-1] != i.shape[-1]:
            raise ConfigError(
                f"hf:{source}: text embeddings have width {t.shape[-1]} but image embeddings {i.shape[-1]}; "
                "this is not a dual encoder with a shared space"
            )
        self.dim = int(t.shape[-1])
        self._token_tower = _class_token_tower(model)
        self.capabilities = replace(type(self).capabilities, patch_tokens=self._token_tower is not None,
                                    languages=_LANGUAGES.get(self.model_type, ("en",)))

    @property
    def token_width(self) -> int:
        """W of :meth:`encode_image_tokens`: the vision tower's hidden size (not projected to ``dim``). Raises
        :class:`PatchTokensUnavailable` (a ConfigError) for model types without class-token patch tokens."""
        return int(self._require_token_tower().post_layernorm.normalized_shape[-1])

    def _require_token_tower(self):
        if self._token_tower is None:
            raise PatchTokensUnavailable(
                f"hf:{self.source}: patch tokens with a class token are not available for model type "
                f"{self.model_type!r} (its image tower has no class token: SigLIP/SigLIP 2 pool with an attention "
                "head, ALIGN is a CNN). Use a head that works on frame vectors instead: " + ", ".join(VECTOR_HEADS)
                + "; or a CLIP-style model (CLIP, MetaCLIP 2, AltCLIP, Chinese-CLIP)"
            )
        return self._token_tower

    @torch.no_grad()
    def encode_image_tokens(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """(B,) images (paths or PIL) -> (B, 1 + P, W) float tokens on the model's device, class token first, no
        grad: the vision tower's last hidden state through its ``post_layernorm`` (the norm CLIP applies to the
        pooled class token, so ``tokens[:, 0]`` is the tower's ``pooler_output``, before the projection).
        Raises ConfigError for towers without a class token (SigLIP, SigLIP 2, ALIGN)."""
        tower = self._require_token_tower()
        batch = [load_image(im) for im in images]
        pixels = self.image_processor(images=batch, return_tensors="pt")["pixel_values"]
        out = tower(pixel_values=pixels.to(self.device, dtype=self.model.dtype))
        return tower.post_layernorm(_last_hidden_state(out))

    @classmethod
    def load(cls, arg: str, device: str | None = None) -> "HFEncoder":
        """Load ``arg`` (local directory or hub id), local files first; see the module docstring."""
        src, is_local = _resolve_source(arg)
        model, tokenizer, image_processor = _load(src, is_local)
        return cls(model, tokenizer, image_processor, device=device, source=src)

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(
            texts, padding=self.policy.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        inputs = {k: v.to(self.device) for k, v in enc.items() if k in self._text_keys}
        return _pooled(self.model.get_text_features(**inputs), "text")

    def _encode_image_batch(self, images: list[Image.Image]) -> torch.Tensor:
        enc = self.image_processor(images=images, return_tensors="pt")
        dtype = self.model.dtype
        inputs = {
            k: v.to(self.device, dtype=dtype if v.is_floating_point() else None)
            for k, v in enc.items()
            if k in self._image_keys
        }
        return _pooled(self.model.get_image_features(**inputs), "image")

    def describe(self) -> dict:
        d = super().describe()
        d.update(
            model_type=self.model_type,
            source=self.source,
            revision=getattr(self.model.config, "_commit_hash", None),
        )
        return d


@ENCODERS.register(
    "hf", help="transformers CLIP/SigLIP/ALIGN/AltCLIP/Chinese-CLIP: hf:<hub id or local dir> (local files first)"
)
def _factory(arg: str | None, device: str | None = None) -> HFEncoder:
    if not arg:
        raise ConfigError("hf needs a hub id or a local directory, e.g. hf:openai/clip-vit-base-patch32 or hf:./my-clip")
    return HFEncoder.load(arg, device=device)


# ---------------------------------------------------------------------------------------------------- helpers


def _pooled(out, kind: str) -> torch.Tensor:
    """(B, dim) embeddings from ``get_{kind}_features``: a tensor in transformers 4.x; in 5.x a ModelOutput whose
    ``pooler_output`` holds the projected embeddings (``{kind}_embeds`` is preferred if a model returns it)."""
    if isinstance(out, torch.Tensor):
        return out
    for name in (f"{kind}_embeds", "pooler_output"):
        v = getattr(out, name, None)
        if isinstance(v, torch.Tensor):
            return v
    raise ConfigError(
        f"get_{kind}_features returned {type(out).__name__} with neither {kind}_embeds nor pooler_output; "
        "this transformers version/model type is not supported by the hf encoder"
    )


def _last_hidden_state(out) -> torch.Tensor:
    """(B, N, W) from a vision tower's output: a ModelOutput (always in transformers 5.x, by default in 4.x), a
    plain tuple (4.x with ``return_dict=False``) or a tensor."""
    if isinstance(out, torch.Tensor):
        return out
    v = getattr(out, "last_hidden_state", None)
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ConfigError(f"the vision tower returned {type(out).__name__} without a last_hidden_state")


def _class_token_tower(model):
    """The ViT vision tower whose ``last_hidden_state`` starts with a class token pooled through ``post_layernorm``
    (CLIP, MetaCLIP 2, AltCLIP, Chinese-CLIP), else None (SigLIP: no class token, attention-pool head; ALIGN: CNN).
    Decided by structure, so unlisted CLIP-like model types work too."""
    tower = getattr(model, "vision_model", None)
    if tower is not None and not hasattr(tower, "post_layernorm"):  # a *VisionModel wrapping the transformer
        tower = getattr(tower, "vision_model", tower)
    norm = getattr(tower, "post_layernorm", None)
    embeddings = getattr(tower, "embeddings", None)
    if isinstance(norm, torch.nn.LayerNorm) and isinstance(getattr(embeddings, "class_embedding", None), torch.Tensor):
        return tower
    return None


def _accepted_args(fn) -> set[str]:
    """Named parameters of a model method (tokenizers may return keys, e.g. token_type_ids, a model rejects)."""
    params = inspect.signature(fn).parameters.values()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _max_length(policy: TextPolicy, tokenizer, config) -> int:
    """The token budget: the policy's, capped by the tokenizer's limit and the text position embeddings."""
    text_cfg = getattr(config, "text_config", config)
    limits = [policy.max_length, getattr(text_cfg, "max_position_embeddings", None)]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and tok_max < 100_000:  # "unset" is a huge sentinel (int(1e30))
        limits.append(tok_max)
    limits = [x for x in limits if isinstance(x, int) and x > 0]
    if not limits:
        raise ConfigError("cannot tell the model's maximum text length (no max_position_embeddings, no tokenizer limit)")
    return min(limits)


def _resolve_source(arg: str) -> tuple[str, bool]:
    """``arg`` -> (local directory or hub id, is_local). Raises ModelUnavailableError for missing paths."""
    p = Path(arg).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelUnavailableError(
                f"hf:{arg}: no config.json in this directory, so it is not a saved transformers model. Make one with "
                "model.save_pretrained(DIR) and processor.save_pretrained(DIR), or `hf download ID --local-dir DIR`."
            )
        return str(p), True
    if p.exists():
        raise ModelUnavailableError(f"hf:{arg} is a file; hf: needs a model directory (save_pretrained) or a hub id")
    if arg.startswith((".", "~", "/")) or "\\" in arg or not _HUB_ID.match(arg):
        raise ModelUnavailableError(
            f"hf:{arg}: directory not found (and it is not a hub id of the form org/name). Check the path, or use "
            "the offline default model: --model concept"
        )
    return arg, False


def _how_to_get(src: str, why: str) -> str:
    name = src.rsplit("/", 1)[-1]
    return (
        f"hf:{src} is not available: {why}. To use it without network, download it on a machine that has network "
        f"(`hf download {src} --local-dir {name}`; older huggingface_hub: `huggingface-cli download ...`; or "
        "AutoModel/AutoProcessor.from_pretrained(ID) then .save_pretrained(DIR)), copy the directory here and use "
        f"--model hf:./{name}. Or use the offline default model: --model concept"
    )


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """True when the user asked for no Hub access (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def probe_hub(repo_id: str, timeout: float = HUB_PROBE_TIMEOUT) -> None:
    """One metadata request, no retries: raise ModelUnavailableError unless ``repo_id`` exists on a reachable Hub."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=timeout)
    except GatedRepoError:
        raise ModelUnavailableError(
            f"{repo_id} is gated: accept its terms on https://huggingface.co/{repo_id} and log in (`hf auth login`)"
        ) from None
    except RepositoryNotFoundError:
        raise ModelUnavailableError(
            f"no model {repo_id!r} on the Hugging Face Hub (or it is private: log in with `hf auth login`). "
            "Check the id, or use the offline default model: --model concept"
        ) from None
    except Exception as e:  # connection refused, DNS failure, timeout, proxy error, HTTP 5xx ...
        raise ModelUnavailableError(
            _how_to_get(repo_id, f"it is not in the local cache and the Hub cannot be reached ({type(e).__name__}: {e})")
        ) from None


def _backend_kwargs() -> tuple[dict, dict]:
    """(image processor kwargs, model kwargs): PIL image processing and float32 weights, per transformers major."""
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        return {"backend": "pil"}, {"dtype": torch.float32}
    return {"use_fast": False}, {"torch_dtype": torch.float32}


def _in_hf_cache(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def _download(src: str):
    """Fetch a hub model that is not (fully) cached, after checking in one short request that this can work."""
    if hub_offline():
        raise ModelUnavailableError(_how_to_get(src, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"))
    probe_hub(src)
    log.warning("hf: downloading %s from the Hugging Face Hub", src)
    try:
        return _load_parts(src, local_files_only=False)
    except OSError as e:
        raise ModelUnavailableError(_how_to_get(src, f"download failed ({e})")) from None


def _load_parts(src: str, local_files_only: bool):
    """(model, tokenizer, image processor); never runs remote code."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    image_kw, model_kw = _backend_kwargs()
    kw = {"local_files_only": local_files_only, "trust_remote_code": False}
    config = AutoConfig.from_pretrained(src, **kw)
    model_cls = MODEL_MAPPING.get(type(config), None)  # the class AutoModel will build, known before loading weights
    if not (hasattr(model_cls, "get_text_features") and hasattr(model_cls, "get_image_features")):
        raise ConfigError(
            f"hf:{src} has model type {config.model_type!r}"
            + (f" ({model_cls.__name__})" if model_cls else "")
            + ", which is not a text-image dual encoder (no get_text_features/get_image_features). "
            f"Known types: {', '.join(sorted(MODEL_TYPES))}"
        )
    if config.model_type not in MODEL_TYPES:
        log.info("hf: model type %r is not in %s; using the default text policy", config.model_type, sorted(MODEL_TYPES))
    tokenizer = AutoTokenizer.from_pretrained(src, **kw)
    # transformers 5 quietly builds an empty tokenizer when the tokenizer files are missing; refuse it
    text_vocab = getattr(getattr(config, "text_config", config), "vocab_size", None)
    if isinstance(text_vocab, int) and len(tokenizer) < text_vocab // 2:
        raise OSError(f"tokenizer files missing: the tokenizer has {len(tokenizer)} tokens, the model {text_vocab}")
    image_processor = AutoImageProcessor.from_pretrained(src, **kw, **image_kw)
    model = AutoModel.from_pretrained(src, config=config, **kw, **model_kw)
    return model, tokenizer, image_processor


def _load(src: str, is_local: bool):
    try:
        # a hub id whose config is not cached cannot load offline: decide before importing transformers (~5 s)
        if not is_local and not _in_hf_cache(src, "config.json"):
            return _download(src)
        try:
            return _load_parts(src, local_files_only=True)
        except OSError as e:  # incomplete directory / partly cached hub model
            if is_local:
                raise ModelUnavailableError(
                    f"hf:{src}: incomplete model directory ({e}). It needs config.json, the weights, the tokenizer "
                    "files and preprocessor_config.json: save with model.save_pretrained(DIR) and "
                    "processor.save_pretrained(DIR)"
                ) from None
        return _download(src)
    except XmrError:
        raise
    except ImportError as e:  # e.g. SigLIP's sentencepiece tokenizer without the sentencepiece package
        raise MissingExtraError(
            f"hf:{src} needs a package that is not installed: {' '.join(str(e).split())} "
            "(SigLIP's tokenizer needs: pip install sentencepiece)"
        ) from None
    except ValueError as e:  # unknown model type / tokenizer class for this transformers version
        import transformers

        raise ConfigError(
            f"hf:{src} cannot be loaded by transformers {transformers.__version__}: {e}. A newer model type may "
            "need `pip install -U transformers`"
        ) from None
