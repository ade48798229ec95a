"""``rtf-serve``: the service under uvicorn, with a deadline for each request's headers.

uvicorn has no header timeout: a connection that sends its headers a byte a second (or
nothing at all) is held for ever. :class:`HeaderDeadlineProtocol` closes a connection whose
request headers are not complete ``RTF_HEADER_TIMEOUT`` seconds after the connection opened
or the request began; the body's deadline is ``RTF_BODY_TIMEOUT``
(:class:`app.main.BodyLimit`).
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import get_settings


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for request headers."""

    _header_timer: asyncio.TimerHandle | None = None

    # asyncio hands a stream protocol a Transport; uvicorn's method (and so this one) narrows BaseTransport to it
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a kept-alive connection's next request

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(get_settings().header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self.transport is not None and not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took over %g s", get_settings().header_timeout)
            self.transport.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="rtf-serve",
        description="Serve RTF (settings from RTF_* environment variables: see README). "
        "Runs uvicorn with header and body read deadlines.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the database (default 1)")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    args = parser.parse_args(argv)
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        http=HeaderDeadlineProtocol,
        loop="auto",
    )


if __name__ == "__main__":
    main()
