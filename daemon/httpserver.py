"""The embedded HTTP server: waitress, bounded so that slow or greedy clients cannot take
it from everyone else.

Waitress reads each request whole before a thread runs it, so a slow client holds no
thread, only a connection; and connections are what it has few of (100 by default,
beyond which it stops accepting). 150 connections that send half a request and wait
(slowloris) left `/healthz` unanswered for 50 s. Three bounds together stop that:

- a connection with no request under way is closed after `idle_seconds`, checked every
  `IDLE_CHECK_SECONDS` (waitress's `channel_timeout` and `cleanup_interval`);
- one client address may hold `per_client` connections; the next one is answered 503
  and closed at once. Waitress has no such bound: `BoundedServer` adds it where the
  connection is accepted;
- `max_connections` in all, watched with poll() rather than select(), which fails past
  1024 descriptors.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

from waitress.adjustments import Adjustments
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger(__name__)

IDLE_CHECK_SECONDS = 2  # how often idle connections are looked for (each look is cheap)
WARNING_SECONDS = 60.0  # refusals are logged at most once in this many seconds
_REFUSAL_TEXT = b"too many open connections from your address\n"
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSAL_TEXT), _REFUSAL_TEXT)
)
"""What a connection beyond its client's bound is told before it is closed."""


@dataclass(frozen=True)
class HttpLimits:
    """The bounds of the embedded server (daemon/settings.py has the defaults)."""

    threads: int
    idle_seconds: int
    max_connections: int
    per_client: int


class BoundedServer(TcpWSGIServer):  # type: ignore[misc]  # waitress has no type hints
    """Waitress's TCP server, refusing a client's connection beyond `per_client` open ones."""

    def __init__(self, *args: Any, per_client: int, **kwargs: Any) -> None:
        self.per_client = per_client
        self._refused = 0
        self._next_warning = 0.0
        super().__init__(*args, **kwargs)

    def accept(self) -> tuple[socket.socket, Any] | None:
        """The next connection, or None (waitress skips it) when its client has too many."""
        pair: tuple[socket.socket, Any] | None = super().accept()
        if pair is None:
            return None
        conn, address = pair
        if self.open_from(address[0]) < self.per_client:
            return pair
        _refuse(conn)
        self._note_refusal(address[0])
        return None

    def open_from(self, client: str) -> int:
        """Connections this client address holds open now."""
        return sum(1 for channel in self.active_channels.values() if channel.addr[0] == client)

    def _note_refusal(self, client: str) -> None:
        self._refused += 1
        now = time.monotonic()
        if now < self._next_warning:
            return
        log.warning(
            "refused %d connection(s) beyond %d open from one address, the last from %s",
            self._refused,
            self.per_client,
            client,
        )
        self._refused = 0
        self._next_warning = now + WARNING_SECONDS


def _refuse(conn: socket.socket) -> None:
    """Tell the client why, if its socket takes it at once, and close."""
    with contextlib.suppress(OSError):
        conn.setblocking(False)
        conn.send(REFUSAL)
    conn.close()


def create_server(app: Any, host: str, port: int, limits: HttpLimits) -> Any:
    """A waitress server for `app` on host:port within `limits`, not yet running
    (`run()` serves until `close()`); one per address when `host` names several."""
    adjustments = Adjustments(
        host=host,
        port=port,
        threads=limits.threads,
        ident="headwater",
        channel_timeout=limits.idle_seconds,
        cleanup_interval=min(IDLE_CHECK_SECONDS, limits.idle_seconds),
        connection_limit=limits.max_connections,
        asyncore_use_poll=True,
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adjustments.threads)
    sockets: dict[int, Any] = {}
    servers = [
        BoundedServer(
            app,
            sockets,
            dispatcher=dispatcher,
            adj=adjustments,
            sockinfo=sockinfo,
            per_client=limits.per_client,
        )
        for sockinfo in adjustments.listen
    ]
    if len(servers) == 1:
        return servers[0]
    listening = [(server.effective_host, server.effective_port) for server in servers]
    return MultiSocketServer(sockets, adjustments, listening, dispatcher, servers[-1].log_info)
