"""``xmr search --server URL`` (or ``$XMR_SERVER``): a text search answered by a running ``xmr serve``, whose model
is already loaded, instead of by this process. Standard library only (urllib): nothing heavy is imported.

The server searches its own index with its own stages, so the options that choose an index or stages here are
refused with --server rather than ignored. A server that cannot be reached is an error, never a quiet local search.
"""
from __future__ import annotations

import os

from ..errors import ConfigError, XmrError

SERVER_ENV = "XMR_SERVER"

#: flags the server decides for itself: (attribute, flag, value meaning "not given")
_LOCAL_ONLY = (("index", "--index", None), ("image", "--image", None), ("vector", "--vector", None),
               ("weights", "--weights", None), ("rescore", "--rescore", None), ("rerank", "--rerank", None),
               ("candidates", "--candidates", None), ("bank", "--bank", None), ("device", "--device", None),
               ("composer", "--composer", None), ("keep_reference", "--keep-reference", False),
               ("use_experts", "--experts", None), ("expert_fusion", "--expert-fusion", "vista"),
               ("expert_weight", "--expert-weight", []), ("recipe_tower", "--recipe-tower", None))


def server_url(args) -> str | None:
    url = getattr(args, "server", None) or os.environ.get(SERVER_ENV) or None
    if url is None:
        return None
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--server / ${SERVER_ENV} must be an http(s):// URL, got {url!r}")
    return url.rstrip("/")


def remote_search(url: str, args, timeout: float = 30.0) -> dict:
    """GET ``/api/search`` on ``url`` with the positional texts, --not, --fuse, --k and --type; the JSON answer."""
    import json
    import urllib.error
    import urllib.parse
    import urllib.request  # 0.1 s: only when a server is asked

    given = [flag for attr, flag, unset in _LOCAL_ONLY if getattr(args, attr, unset) != unset]
    if given:
        raise ConfigError(f"{', '.join(given)} cannot be used with --server/${SERVER_ENV}: the server searches its "
                          "own index with its own stages (unset XMR_SERVER or drop --server to search locally)")
    phrase = getattr(args, "phrase", None)
    if not args.query and not phrase:
        raise ConfigError('give a text query (e.g. xmr search "a cat on a sofa"); --server answers text queries')
    params = [("q", t) for t in args.query or [phrase]] + [("not", t) for t in args.negatives]
    params += [("phrase", phrase)] if phrase else []
    params += [("k", str(args.k)), ("type", args.media_type), ("fuse", args.fuse)]
    if getattr(args, "lang", None):
        params.append(("lang", args.lang))
    req = urllib.request.Request(f"{url}/api/search?{urllib.parse.urlencode(params)}",
                                 headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        try:
            why = json.loads(e.read().decode("utf-8")).get("error") or e.reason
        except (ValueError, AttributeError):
            why = e.reason
        raise XmrError(f"xmr serve at {url} refused the search ({e.code}): {why}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise XmrError(f"cannot reach xmr serve at {url} ({reason}); start it with `xmr serve`, or search locally "
                       f"without --server / ${SERVER_ENV}") from None
