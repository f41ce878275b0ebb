"""The HTTP/1.1 protocol ``xmr serve`` runs uvicorn with: uvicorn's h11 protocol plus a deadline for request
headers.

uvicorn times out idle keep-alive connections (``timeout_keep_alive``) but not a client that opens a connection
and sends half a request line or half its headers: such connections were held open indefinitely (1,000 of them
after 70 s). Here every connection must deliver complete request headers within ``header_timeout`` seconds of
connecting, or of the previous response, or it is closed. Bodies have their own deadline where they are read
(:func:`xmr.serve.uploads.read_body_limited`).
"""
from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


def timed_h11(header_timeout: float) -> type[asyncio.Protocol]:
    """An :class:`H11Protocol` subclass closing connections that do not send request headers in time."""

    class TimedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._watch_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_headers()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch_headers()

        def connection_lost(self, exc) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _watch_headers(self) -> None:
            if self.transport.is_closing() or not self._waiting_for_headers():
                self._cancel_header_timer()
            elif self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self._waiting_for_headers() and not self.transport.is_closing():
                self.logger.info("closing a connection that sent no complete request headers in %g s", header_timeout)
                self.transport.close()

    return TimedH11Protocol
