"""``xmr models``: list encoder names, and the components other packages add through plugins (``xmr.plugins``
entry points; a plugin that failed to load is listed with its reason)."""
from __future__ import annotations

from ._common import print_json, register_command


def setup(p):
    p.add_argument("--json", action="store_true", help="encoders and plugins as JSON")


def run(args) -> int:
    from ..encoders import DEFAULT_ENCODER, list_encoders
    from ..plugins import origin, plugin_report
    from ..registries import load_all

    load_all("encoder")  # xmr's encoders, then the plugins
    plugins = plugin_report()
    encoders = [{"name": n, "help": h, "plugin": origin("encoder", n)} for n, h in list_encoders()]
    if getattr(args, "json", False):
        print_json({"encoders": encoders, "default": DEFAULT_ENCODER, "plugins": plugins})
        return 0
    for e in encoders:
        mark = " (default)" if e["name"] == DEFAULT_ENCODER else f" (plugin {e['plugin']})" if e["plugin"] else ""
        print(f"{e['name']}{mark}: {e['help']}")
    if plugins:
        print("\nplugins (entry points xmr.plugins):")
    for p in plugins:
        src = f"{p['value']}" + (f", {p['dist']}" if p["dist"] else "")
        if p["error"]:
            print(f"  {p['name']} ({src}): NOT LOADED: {p['error']}")
        else:
            print(f"  {p['name']} ({src}): {', '.join(p['components']) or 'registered nothing'}")
    return 0


register_command("models", "list the available encoders and plugin components", setup, run)
