"""``xmr serve``: the search service and web page over an index (extra ``xmr[serve]``)."""
from __future__ import annotations

import logging
import sys

from ._common import add_device_arg, add_index_arg, index_path, register_command
from ._stage_args import add_expert_args, add_rerank_args, add_rescore_args, search_options, serve_expert_options

log = logging.getLogger("xmr.serve")


def setup(p):
    add_index_arg(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only). Anything else exposes every "
                        "indexed file to whoever can reach the port, without authentication")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="extra Host header value to accept (e.g. the machine's LAN name); repeatable")
    add_device_arg(p)
    p.add_argument("--query-cache", type=int, default=1024, metavar="N",
                   help="text-query embeddings kept in memory (LRU by model + text; default 1024, 0: off)")
    p.add_argument("--candidates", type=int, default=None, metavar="K",
                   help="candidate pool re-scored by --rescore / --rerank / the index's re-scoring video head "
                        "(default max(100, k))")
    add_rescore_args(p)
    add_rerank_args(p)
    add_expert_args(p, phrase=False)  # the phrase is per request (phrase=, or a "quoted" part of the query)
    p.add_argument("--composer", default=None, metavar="DIR",
                   help="compose image + text queries (API and web page) with this trained composer (xmr "
                        "train-compose), trained on the index's model; default: the training-free fusion")
    p.add_argument("--moment-model", default=None, metavar="DIR",
                   help="localise type=moment searches (API and web page) with this trained SQuiDNet (xmr "
                        "train-moments) of the index's model width; default: training-free proposals")


def run(args) -> int:
    from .._deps import require
    from ..errors import ConfigError
    from ..serve import ServeSettings, create_app
    from ..serve.settings import is_loopback, uvicorn_options

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be 1..65535, got {args.port}")
    if args.candidates is not None and not 1 <= args.candidates <= 10_000:
        raise ConfigError(f"--candidates must be an integer between 1 and 10000, got {args.candidates}")
    if not 0 <= args.query_cache <= 10_000_000:
        raise ConfigError(f"--query-cache must be an integer between 0 and 10000000, got {args.query_cache}")
    options = search_options(args)  # the stage options are checked before the model loads
    options, use_experts = serve_expert_options(args, options)
    uvicorn = require("uvicorn", extra="serve")
    settings = ServeSettings(host=args.host, port=args.port, extra_hosts=tuple(args.allowed_host), device=args.device,
                             query_cache_size=args.query_cache, composer=args.composer, moment_model=args.moment_model,
                             experts=use_experts)
    if not is_loopback(args.host):
        bar = "!" * 78
        print(f"{bar}\nxmr serve: WARNING: binding to {args.host}, not to loopback. Anyone who can reach this machine "
              f"on port {args.port}\ncan search the index and download every indexed file. There is no "
              f"authentication.\nUse --host 127.0.0.1 (the default) unless this network is trusted.\n{bar}",
              file=sys.stderr)
    from ..serve.uploads import limit_malloc_arenas

    limit_malloc_arenas(2)  # decoded uploads are freed back to the system, not kept per thread (docs/serving.md)
    app = create_app(index_path(args), settings=settings, options=options)
    live = app.state.xmr.live
    snap = live.snapshot()
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"xmr serve: http://{shown}:{args.port}/  (index {live.path}, {snap.count} items, model {live.model_spec}; "
          f"Ctrl-C stops)", file=sys.stderr, flush=True)
    uvicorn.run(app, **uvicorn_options(settings, log_level="warning" if args.quiet else "info",
                                       access_log=bool(args.verbose)))
    return 0


register_command("serve", "web page and REST API to search an index (needs xmr[serve])", setup, run)
