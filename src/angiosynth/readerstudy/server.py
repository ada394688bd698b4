"""The reader study's HTTP server side, below the routes of `app`: the security headers on every
answer, the request-body limit, the deadline of a request still arriving, uvicorn's settings,
tokens kept out of the logs, and the public origin of a study behind a reverse proxy.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from urllib.parse import urlsplit

import h11
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from angiosynth.errors import OptionError

#: Host names always answered besides the public URL's: a reverse proxy on the same machine
#: that keeps its default Host header (nginx: $proxy_host), and local use.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
#: The largest request body accepted, in bytes (an answer takes under 200).
MAX_BODY_BYTES = 16 * 1024
#: Seconds a connection has to send a whole request (head and body) after it opened or after
#: the previous answer; it is closed then (uvicorn alone waits for ever).
REQUEST_TIMEOUT_S = 10.0
#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_S = 5
#: The largest request head (request line and headers), in bytes; a longer one gets 400.
MAX_HEAD_BYTES = 16 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def add_security_headers(headers: MutableHeaders) -> None:
    headers.update(SECURITY_HEADERS)
    if "cache-control" not in headers:
        headers["Cache-Control"] = "no-store"


class SecurityHeaders:
    """ASGI middleware: the security headers (and Cache-Control: no-store unless set) on every
    answer, the errors of the middleware inside it included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Runs the app, adding the headers to the start of its answer."""

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(MutableHeaders(scope=message))
            await send(message)

        await self.app(scope, receive, send_with_headers)


def too_large() -> HTTPException:
    return HTTPException(413, f"request body too large (over {MAX_BODY_BYTES} bytes)",
                         headers={"Connection": "close"})  # fmt: skip


def _declared_size(scope: Scope) -> int:
    declared = Headers(scope=scope).get("content-length", "")
    return int(declared) if declared.isdigit() else 0


class BodyLimit:
    """ASGI middleware: a request body over MAX_BODY_BYTES gets 413 and the connection is
    closed; at once when Content-Length announces it, else as soon as the bytes received
    pass the limit (a chunked body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answers 413 or runs the app with a receive that counts the body's bytes."""
        if scope["type"] == "http" and _declared_size(scope) > MAX_BODY_BYTES:
            error = too_large()
            response = JSONResponse({"detail": error.detail}, 413, headers=error.headers)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise too_large()
            return message

        await self.app(scope, counted, send)


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline: a connection that has not sent a whole request
    (head and body) REQUEST_TIMEOUT_S after it opened, or after the previous answer, is closed.
    uvicorn itself never times out a request that is still arriving."""

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        """Starts the deadline of the first request."""
        super().connection_made(transport)
        self._start_deadline()

    def on_response_complete(self) -> None:
        """Starts the deadline of the next request."""
        super().on_response_complete()
        self._start_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancels the deadline."""
        self._cancel_deadline()
        super().connection_lost(exc)

    def _start_deadline(self) -> None:
        self._cancel_deadline()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(REQUEST_TIMEOUT_S, self._on_deadline)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            self.logger.info("closed a connection that sent no whole request in %g s",
                             REQUEST_TIMEOUT_S)  # fmt: skip
            self.transport.close()


_SIGN_IN_PATH = re.compile(r"/s/[^/?\s]+")


class RedactTokens(logging.Filter):
    """Replaces the token of personal links (/s/<token>) in log records by "/s/[token]"."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redacts the record's arguments and message; keeps every record."""
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _redact(record.msg)
        return True


def _redact(text: str) -> str:
    return _SIGN_IN_PATH.sub("/s/[token]", text)


def uvicorn_log_config() -> dict:
    """uvicorn's logging configuration with the tokens of personal links redacted."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact_tokens": {"()": RedactTokens}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact_tokens"]
    return config


def uvicorn_settings() -> dict:
    """The settings of `uvicorn.run` for a study: TimedH11Protocol (always h11, also where
    httptools is installed), the keep-alive time, the largest request head, the redacted log."""
    return {
        "http": TimedH11Protocol,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "log_config": uvicorn_log_config(),
    }


def public_origin(url: str) -> str:
    """The origin of a public URL: scheme://host[:port], lower case, the default port left out
    (as browsers send it in the Origin header).

    Raises:
        OptionError: unless `url` is http(s)://host[:port] without path, query or user name.
    """
    parts = urlsplit(url.strip())
    problem = (f"public URL {url!r}: expected http:// or https://host[:port] without path, "
               "query or user name")  # fmt: skip
    try:
        port = parts.port
    except ValueError:
        raise OptionError(problem) from None
    if (parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc
            or parts.path not in ("", "/") or parts.query or parts.fragment):  # fmt: skip
        raise OptionError(problem)
    default_port = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host_header(parts.hostname)}" + (
        "" if port in (None, default_port) else f":{port}")  # fmt: skip


def host_header(hostname: str) -> str:
    """A host name as the Host header writes it (an IPv6 address in brackets)."""
    return f"[{hostname}]" if ":" in hostname else hostname
