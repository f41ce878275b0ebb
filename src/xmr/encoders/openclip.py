"""``openclip:<arch>[:<pretrained tag or checkpoint path>]``: OpenCLIP models (extra: ``pip install 'xmr[openclip]'``).

Examples: ``openclip:ViT-B-32:laion2b_s34b_b79k``, ``openclip:ViT-B-16-SigLIP:webli``, ``openclip:ViT-B-32:./ckpt.pt``,
``openclip:hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K`` (config + weights from a hub repo),
``openclip:ViT-B-32:random`` (random weights, for experiments only).

The extra installs ``open-clip-torch``, which needs ``torchvision`` for its image transforms. torchvision must be the
build made for the installed torch (each torch release has exactly one matching torchvision); a mismatched pair fails
at import, and xmr reports that as a missing extra rather than a traceback.

Weights come from open_clip's own download logic. Before it runs, xmr checks that Hub-hosted weights are either in
the local Hugging Face cache or downloadable (one 5 s request), so an offline machine fails in seconds with
:class:`~xmr.errors.ModelUnavailableError` instead of retrying for half a minute.
"""
from __future__ import annotations

import difflib
import logging
from pathlib import Path

import torch
from PIL import Image

from .._deps import require
from ..errors import ConfigError, MissingExtraError, ModelUnavailableError
from ..spec import parse_spec
from . import ENCODERS
from ._device import resolve_device
from .base import Encoder
from .hf import hub_offline, probe_hub

log = logging.getLogger(__name__)

#: file names open_clip looks for in a Hub repo, safetensors first
_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_HF_HUB_PREFIX = "hf-hub:"
_RANDOM = "random"


class OpenClipEncoder(Encoder):
    """Wraps an open_clip model, its eval transform and tokenizer."""

    def __init__(self, model, preprocess, tokenizer, device: str | torch.device | None = None, name: str = ""):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess  # PIL image -> (3, H, W) tensor (torchvision transform from open_clip)
        self.tokenizer = tokenizer  # list[str] -> (B, context_length) LongTensor
        self.name = name
        with torch.no_grad():
            self.dim = int(self._encode_text_batch(["a photo"]).shape[-1])

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))

    def _encode_image_batch(self, images: list[Image.Image]) -> torch.Tensor:
        x = torch.stack([self.preprocess(im) for im in images]).to(self.device)
        return self.model.encode_image(x)

    def describe(self) -> dict:
        return {**super().describe(), "open_clip_model": self.name}


@ENCODERS.register("openclip", help="OpenCLIP model: openclip:ARCH[:TAG or checkpoint path] (extra: xmr[openclip])")
def _factory(arg: str | None, device: str | None = None) -> OpenClipEncoder:
    arch, pretrained = parse_arg(arg)
    open_clip = _import_open_clip()
    pretrained = _check_weights(open_clip, arch, pretrained)
    if pretrained is None and not arch.startswith(_HF_HUB_PREFIX):
        log.warning("openclip:%s: random initialisation: embeddings are meaningless until trained", arch)
    dev = resolve_device(device)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=dev)
        tokenizer = open_clip.get_tokenizer(arch)
    except (OSError, RuntimeError) as e:  # download failed / not cached offline / unusable checkpoint
        raise ModelUnavailableError(
            f"openclip:{arg}: open_clip could not load the weights ({type(e).__name__}: {e}). Download them on a "
            "machine with network (run the same command there, then copy ~/.cache/huggingface), pass a local "
            "checkpoint as openclip:ARCH:/path/to/ckpt, or use the offline default model: --model concept"
        ) from None
    return OpenClipEncoder(model, preprocess, tokenizer, device=dev, name=f"{arch}:{pretrained or _RANDOM}")


def parse_arg(arg: str | None) -> tuple[str, str | None]:
    """``"ViT-B-32:laion2b_s34b_b79k"`` -> ``("ViT-B-32", "laion2b_s34b_b79k")``; ``"hf-hub:org/x"`` -> (it, None).

    Only the first colon splits, so a Windows checkpoint path (``C:\\ckpt.pt``) survives as the tag."""
    if not arg:
        raise ConfigError(
            "openclip needs an architecture and weights, e.g. openclip:ViT-B-32:laion2b_s34b_b79k "
            "(list them with: python -c 'import open_clip; print(open_clip.list_pretrained())')"
        )
    if arg.startswith(_HF_HUB_PREFIX):
        return arg, None
    s = parse_spec(arg, "openclip model")  # ARCH[:TAG], split at the first colon like every NAME:ARG spec
    return s.name, (s.arg or None)


def _import_open_clip():
    try:
        return require("open_clip", extra="openclip", package="open-clip-torch")
    except MissingExtraError as e:
        raise MissingExtraError(
            f"{e}. The extra also needs torchvision, and it must be the torchvision build that matches your torch "
            f"({torch.__version__}); if `import torchvision` fails, install the matching pair."
        ) from e.__cause__
    except RuntimeError as e:  # typically a torch/torchvision mismatch ("operator torchvision::nms does not exist")
        raise MissingExtraError(
            f"open_clip is installed but failed to import ({e}). Usually torchvision does not match torch "
            f"{torch.__version__}: install the torchvision release made for it, or reinstall: pip install 'xmr[openclip]'"
        ) from e


def _check_weights(open_clip, arch: str, pretrained: str | None) -> str | None:
    """Validate the arch and tag; make sure weights are local or downloadable. Returns what to pass as
    ``pretrained`` (tag, checkpoint path, or None for random / hf-hub)."""
    if arch.startswith(_HF_HUB_PREFIX):
        _ensure_hub_files(arch[len(_HF_HUB_PREFIX):], ("open_clip_config.json",))
        return None
    models = open_clip.list_models()
    if arch not in models:
        close = difflib.get_close_matches(arch, models, n=5)
        raise ConfigError(f"unknown open_clip architecture {arch!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
    tags = list(open_clip.list_pretrained_tags_by_model(arch))
    if pretrained is None:
        raise ConfigError(
            f"openclip:{arch} needs pretrained weights: openclip:{arch}:TAG with TAG one of "
            f"{', '.join(tags) or '(none known)'}, or openclip:{arch}:/path/to/checkpoint "
            f"(openclip:{arch}:{_RANDOM} for random weights)"
        )
    if pretrained == _RANDOM:
        return None
    path = Path(pretrained).expanduser()
    if path.is_file():
        return str(path)
    norm = pretrained.lower().replace("-", "_")  # open_clip's tag normalisation
    if norm not in {t.lower().replace("-", "_") for t in tags}:
        if path.suffix or "/" in pretrained or "\\" in pretrained:
            raise ModelUnavailableError(f"openclip:{arch}:{pretrained}: checkpoint file not found")
        raise ConfigError(f"unknown pretrained tag {pretrained!r} for {arch}; available: {', '.join(tags) or '(none)'}")
    hf_hub = (open_clip.get_pretrained_cfg(arch, pretrained) or {}).get("hf_hub") or ""
    if hf_hub:
        repo, filename = _split_hub(hf_hub)
        _ensure_hub_files(repo, (filename,) if filename else _HF_WEIGHT_FILES)
    return pretrained


def _split_hub(hf_hub: str) -> tuple[str, str]:
    """open_clip's ``hf_hub`` field: ``"org/repo/"`` -> ("org/repo", ""); ``"org/repo/f.bin"`` -> ("org/repo", "f.bin")."""
    parts = hf_hub.strip("/").split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def _ensure_hub_files(repo_id: str, filenames: tuple[str, ...]) -> None:
    """Return if any of ``filenames`` of ``repo_id`` is in the local HF cache; otherwise fail fast when offline or
    when the Hub cannot be reached (open_clip would retry for ~25 s), else let open_clip download."""
    from huggingface_hub import try_to_load_from_cache

    if any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in filenames):
        return
    if hub_offline():
        raise ModelUnavailableError(
            f"open_clip weights {repo_id} are not in the local Hugging Face cache and HF_HUB_OFFLINE is set. Download "
            f"them on a machine with network (`hf download {repo_id}`, then copy ~/.cache/huggingface/hub), or pass "
            "a local checkpoint: openclip:ARCH:/path/to/ckpt"
        )
    probe_hub(repo_id)
