"""Settings of the search service. Defaults are the safe choice: loopback only, bounded inputs, no disk writes."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

#: Host header values accepted by default (DNS-rebinding guard for a loopback server).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"  # bind address; anything but loopback is announced with a loud warning
    port: int = 8000
    #: accepted Host headers (Starlette TrustedHostMiddleware); None = derived from ``host`` (see allowed_host_list)
    allowed_hosts: tuple[str, ...] | None = None
    max_query_chars: int = 1000  # text queries longer than this get 422
    max_k: int = 100  # k must be in 1..max_k
    default_k: int = 20
    max_upload_bytes: int = 20 * 1024 * 1024  # image-query uploads over this get 413
    max_upload_pixels: int = 40_000_000  # decoded pixel limit of an uploaded image (decompression bombs)
    #: decoded pixels of all uploads in flight together (80 MP: two images at the limit, ~240 MB as RGB); an upload
    #: waits for room (up to upload_wait_s, then 503) before it is decoded
    upload_pixel_budget: int = 80_000_000
    upload_wait_s: float = 30.0
    upload_timeout_s: float = 60.0  # the whole upload body must arrive within this (else 408)
    header_timeout_s: float = 10.0  # a connection must send complete request headers within this (else closed)
    max_connections: int = 256  # concurrent connections + requests (uvicorn limit_concurrency; over it: 503)
    thumb_size: int = 256  # longest side of a thumbnail, pixels
    thumb_cache_bytes: int = 64 * 1024 * 1024  # in-memory LRU budget for thumbnails
    #: serve media whose real path lies outside its indexed root (e.g. reached through a folder symlink)?
    allow_outside_root: bool = False
    max_text_batch: int = 32  # concurrent text queries encoded together
    query_cache_size: int = 1024  # text-query embeddings kept (LRU, keyed by model + text); 0: no cache
    #: answer plain GET /api/search requests (only q / k / type) with the route's code but without FastAPI's
    #: per-request machinery (xmr.serve.fast_search; same answers, about half the CPU); False: always the route
    fast_search: bool = True
    faiss_threads: int | None = 1  # OpenMP threads per FAISS search (requests run in parallel); None: FAISS default
    device: str | None = None  # torch device of the query encoder (when create_app loads it)
    extra_hosts: tuple[str, ...] = field(default=())  # added to the derived allowed hosts
    #: folder of a trained composer (xmr train-compose) that composes image + text queries (docs/composed.md);
    #: None: the training-free fusion
    composer: str | None = None
    #: folder of a trained SQuiDNet (xmr train-moments) that localises type=moment searches (docs/moments.md);
    #: None: the training-free proposals
    moment_model: str | None = None
    #: run the experts stage on an index built with --experts (xmr serve --experts none: False, the visual score
    #: alone); which experts and how they are fused: the app's SearchOptions (--experts, --expert-fusion)
    experts: bool = True

    def allowed_host_list(self) -> list[str]:
        if self.allowed_hosts is not None:
            return list(self.allowed_hosts)
        if is_wildcard(self.host):
            return ["*"]
        hosts = list(LOOPBACK_HOSTS)
        if self.host not in hosts:
            hosts.append(self.host)
        return hosts + [h for h in self.extra_hosts if h not in hosts]


def uvicorn_options(s: ServeSettings, **extra) -> dict:
    """Keyword arguments of ``uvicorn.run`` / ``uvicorn.Config`` enforcing the settings' connection limits: h11
    with a request-header deadline (:mod:`xmr.serve.protocol`), 5 s keep-alive, at most ``max_connections``
    connections and requests at once (503 beyond), no ``Server`` header."""
    from .protocol import timed_h11

    return {"host": s.host, "port": s.port, "http": timed_h11(s.header_timeout_s), "timeout_keep_alive": 5,
            "limit_concurrency": s.max_connections, "server_header": False, **extra}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "[::]", "")
