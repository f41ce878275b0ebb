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
    thumb_size: int = 256  # longest side of a thumbnail, pixels
    thumb_cache_bytes: int = 64 * 1024 * 1024  # in-memory LRU budget for thumbnails
    #: serve media whose real path lies outside its indexed root (e.g. reached through a folder symlink)?
    allow_outside_root: bool = False
    max_text_batch: int = 32  # concurrent text queries encoded together
    query_cache_size: int = 1024  # text-query embeddings kept (LRU, keyed by model + text); 0: no cache
    faiss_threads: int | None = 1  # OpenMP threads per FAISS search (requests run in parallel); None: FAISS default
    device: str | None = None  # torch device of the query encoder (when create_app loads it)
    extra_hosts: tuple[str, ...] = field(default=())  # added to the derived allowed hosts

    def allowed_host_list(self) -> list[str]:
        if self.allowed_hosts is not None:
            return list(self.allowed_hosts)
        if is_wildcard(self.host):
            return ["*"]
        hosts = list(LOOPBACK_HOSTS)
        if self.host not in hosts:
            hosts.append(self.host)
        return hosts + [h for h in self.extra_hosts if h not in hosts]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "[::]", "")
