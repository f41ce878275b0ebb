"""One parser for ``NAME[:ARG]`` component specs (encoders, re-rankers, fusions, dataset schemes, ...).

``NAME`` is everything before the first colon and ``ARG`` everything after it, interpreted by the component (a hub
id or folder for ``hf``, ``ARCH[:TAG]`` for ``openclip``, a trained model's folder for ``xattn`` / ``learned``)::

    parse_spec("hf:openai/clip-vit-base-patch32")  # Spec(name="hf", arg="openai/clip-vit-base-patch32", ...)
    parse_spec("openclip:ViT-B-32:laion2b")         # Spec(name="openclip", arg="ViT-B-32:laion2b", ...)
    parse_spec("tiny")                              # Spec(name="tiny", arg=None, ...)
    parse_spec("tiny:")                             # Spec(name="tiny", arg="", ...): a colon with nothing after it

Whether a name exists is the registry's business (``REGISTRY.get(spec.name)`` lists the available ones), and
whether an argument is required is the component's.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Spec:
    """A parsed ``NAME[:ARG]`` spec."""

    name: str  # before the first colon
    arg: str | None  # after the first colon; None when there is no colon ("" for "NAME:")
    raw: str  # the whole spec, surrounding whitespace stripped

    def __str__(self) -> str:
        return self.raw

    def __iter__(self):  # ``name, arg = parse_spec(...)``
        return iter((self.name, self.arg))


def parse_spec(text: str | None, kind: str = "encoder", default: str | None = None, *,
               hint: str | None = None) -> Spec:
    """Split ``text`` at its first colon into a :class:`Spec`.

    ``kind`` names the component in error messages (``"encoder"``, ``"re-ranker"``, ...). ``default`` is parsed
    instead when ``text`` is None or blank; without one, a None, blank or non-string ``text`` raises ConfigError
    (``"empty {kind} spec ''; {hint}"``, e.g. ``hint="try 'concept'"``)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        if default is not None:
            return parse_spec(default, kind, hint=hint)
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"empty {kind} spec {text!r}" + (f"; {hint}" if hint else ""))
    raw = text.strip()
    name, sep, arg = raw.partition(":")
    return Spec(name, arg if sep else None, raw)


__all__ = ["Spec", "parse_spec"]
