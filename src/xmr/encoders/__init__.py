"""Encoders: one registry, one factory.

A spec is ``NAME`` or ``NAME:ARG``; ``ARG`` is everything after the first colon and is interpreted by the
encoder (a hub id or local directory for ``hf``, ``ARCH[:TAG]`` for ``openclip``, a variant for ``concept``).
"""
from __future__ import annotations

from ..registries import ENCODERS as ENCODERS  # name -> factory(arg: str | None, device: str | None) -> Encoder
from ..registries import load_all, load_for
from ..spec import parse_spec as _parse

DEFAULT_ENCODER = "concept"


def _load_all() -> None:
    """Import the modules that register encoders (listed in :data:`xmr.registries.MODULES`); lazily, so `import
    xmr` stays light."""
    load_all("encoder")


def __getattr__(name: str):
    # the Encoder base class pulls in torch: loaded on first use so `xmr --help` stays fast
    if name in ("Encoder", "l2_normalize"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"hf:openai/clip-vit-base-patch32"`` -> ``("hf", "openai/clip-vit-base-patch32")`` (kept for callers that
    want a tuple; :func:`xmr.spec.parse_spec` gives the :class:`~xmr.spec.Spec`)."""
    s = _parse(spec, "encoder", hint=f"try {DEFAULT_ENCODER!r}")
    return s.name, s.arg


def create_encoder(spec: str = DEFAULT_ENCODER, device: str | None = None) -> Encoder:
    """Build an encoder from a spec string, e.g. ``concept``, ``hf:./my-clip``, ``openclip:ViT-B-32:laion2b``,
    ``tiny``. Raises :class:`~xmr.errors.ConfigError` for unknown names and
    :class:`~xmr.errors.ModelUnavailableError` when weights are not available offline."""
    s = _parse(spec, "encoder", hint=f"try {DEFAULT_ENCODER!r}")
    load_for("encoder", s.name)  # only the module that builds it: `concept` never imports the torch encoders
    enc = ENCODERS.get(s.name)(s.arg, device=device)
    enc.spec = s.raw
    return enc


def absolute_spec(spec: str) -> str:
    """The spec with local paths made absolute (``tiny:ckpt`` -> ``tiny:/home/u/ckpt``; in ``video:<spec>+<head>@DIR``
    both the image spec and DIR), so an index bound to it works from any working directory. Hub ids and names that
    are not existing paths are unchanged."""
    import os

    name, arg = parse_spec(spec)
    if arg is None:
        return spec.strip()
    if name == "video":
        from .video import parse_video_arg

        base, head, head_dir = parse_video_arg(arg)
        tail = f"@{os.path.abspath(os.path.expanduser(head_dir))}" if head_dir else ""
        return f"video:{absolute_spec(base)}+{head}{tail}"
    p = os.path.expanduser(arg)
    return f"{name}:{os.path.abspath(p)}" if os.path.exists(p) else spec.strip()


#: encoder names whose models may declare a ``rescore_default`` (``xmr index`` builds such a model to warm its
#: querybank statistics even when a run encoded nothing; any other model is not loaded for that)
RESCORING_ENCODERS = ("concept", "concept+lang")


def may_recommend_rescore(spec: str) -> bool:
    return parse_spec(spec)[0] in RESCORING_ENCODERS


def list_encoders() -> list[tuple[str, str]]:
    """(name, help) of every registered encoder."""
    _load_all()
    return [(e.name, e.help) for e in ENCODERS]


__all__ = ["ENCODERS", "DEFAULT_ENCODER", "Encoder", "absolute_spec", "create_encoder", "list_encoders",
           "l2_normalize", "parse_spec"]
