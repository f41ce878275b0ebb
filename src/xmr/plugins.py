"""Components from other packages: Python entry points in the group ``xmr.plugins``.

Hook spec. A distribution declares, in its ``pyproject.toml``::

    [project.entry-points."xmr.plugins"]
    codecmr = "xmr_codecmr:register"

and ``register`` is a callable taking the :mod:`xmr.registries` module; it registers its components exactly as
xmr's own modules do (``registries.ENCODERS.register("codecmr", help=...)(factory)``, ``registries.EXPERTS``,
``registries.DATASETS``, ``registries.EXPERT_FUSERS``, ...: any registry of :data:`xmr.registries.ALL`). This is
the shape of simonw/llm's ``register_models(register)`` hook, with the standard library's
``importlib.metadata`` instead of pluggy (no dependency; one hook).

Plugins are loaded once per process, the first time :func:`xmr.registries.load_all` runs (``xmr models``, creating
a component by a name xmr does not know), after xmr's own components. ``XMR_NO_PLUGINS=1`` turns them off. A plugin
that fails to import or to register, or that tries to replace one of xmr's own components, is **not** loaded: what
it registered is rolled back, the reason is kept (:func:`plugin_report`, shown by ``xmr models``) and logged as a
warning, and xmr goes on without it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

GROUP = "xmr.plugins"
log = logging.getLogger(__name__)


@dataclass
class PluginInfo:
    name: str  # the entry point's name
    value: str  # module:attribute
    dist: str | None  # the distribution that declares it (and its version)
    components: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) registered
    error: str | None = None  # why it is not loaded


_loaded: list[PluginInfo] | None = None
_origin: dict[tuple[str, str], str] = {}  # (kind, name) -> plugin name


def _entry_points():
    from importlib.metadata import entry_points

    return list(entry_points(group=GROUP))


def load_plugins(force: bool = False) -> list[PluginInfo]:
    """Load every ``xmr.plugins`` entry point once (again with ``force``, after :func:`unload_plugins`)."""
    global _loaded
    if _loaded is not None and not force:
        return _loaded
    if force and _loaded:
        unload_plugins()
    _loaded = []
    if os.environ.get("XMR_NO_PLUGINS", "").strip() not in ("", "0"):
        return _loaded
    from . import registries

    try:
        eps = _entry_points()
    except Exception as e:  # a broken installed distribution's metadata
        log.warning("xmr plugins: could not list entry points (%s)", e)
        return _loaded
    for ep in sorted(eps, key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        info = PluginInfo(ep.name, ep.value, f"{dist.name} {dist.version}" if dist is not None else None)
        before = {k: dict(r._entries) for k, r in registries.ALL.items()}
        try:
            fn = ep.load()
            if not callable(fn):
                raise TypeError(f"{ep.value} is not callable; the hook is register(registries)")
            fn(registries)
            replaced = [(k, n) for k, r in registries.ALL.items() for n, e in r._entries.items()
                        if n in before[k] and before[k][n] is not e]
            if replaced:
                raise ValueError("it replaces xmr's own " + ", ".join(f"{k} {n!r}" for k, n in replaced)
                                 + "; a plugin must use new names")
        except BaseException as e:  # noqa: BLE001 - a plugin must never break xmr (SystemExit included)
            if isinstance(e, KeyboardInterrupt):
                raise
            for k, r in registries.ALL.items():  # roll back everything it registered
                r._entries.clear()
                r._entries.update(before[k])
            info.error = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
            log.warning("xmr plugin %r (%s) not loaded: %s", ep.name, ep.value, info.error)
        else:
            info.components = [(k, n) for k, r in registries.ALL.items() for n in r._entries if n not in before[k]]
            for c in info.components:
                _origin[c] = ep.name
        _loaded.append(info)
    return _loaded


def unload_plugins() -> None:
    """Remove every plugin component from the registries (tests; a later :func:`load_plugins` loads them again)."""
    global _loaded
    from . import registries

    for (kind, name) in list(_origin):
        registries.ALL[kind]._entries.pop(name, None)
    _origin.clear()
    _loaded = None


def origin(kind: str, name: str) -> str | None:
    """The plugin that registered ``name`` of ``kind`` (None: xmr's own)."""
    return _origin.get((kind, name))


def plugin_report() -> list[dict]:
    """One dict per plugin entry point: name, value, dist, components ``["encoder:codecmr", ...]``, error."""
    return [{"name": p.name, "value": p.value, "dist": p.dist, "components": [f"{k}:{n}" for k, n in p.components],
             "error": p.error} for p in load_plugins()]


__all__ = ["GROUP", "PluginInfo", "load_plugins", "origin", "plugin_report", "unload_plugins"]
