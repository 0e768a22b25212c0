"""The Host allow-list: the defence against DNS rebinding.

A web page on a name its owner controls (`rebind.example`) can make that name resolve to
127.0.0.1 once the page has loaded; the browser then treats the daemon as part of that
page's own site and lets its scripts start flows and read the answers. The one thing
such a request cannot hide is its `Host` header, which names the attacker's domain. So
every request is checked before anything else runs: its Host must be a name this daemon
answers to, or the answer is 400.

Admitted:
- `localhost`, and the names in `WebSettings.allowed_hosts` (`--allowed-hosts`,
  `HEADWATER_ALLOWED_HOSTS`; the address the daemon listens on is added by the daemon).
  A name that starts with a dot admits its subdomains. Any port.
- any IP address (`127.0.0.1:8080`, `[::1]`, `10.0.0.5`): a page can only send one as
  its Host when it was loaded from that address itself, so no other site's script can
  be behind it; health probes (Kubernetes probes send the pod's IP) need no setting.
- a request without a Host header (HTTP/1.0): browsers always send one.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection

from flask import Flask, request
from werkzeug.exceptions import BadRequest
from werkzeug.sansio.utils import host_is_trusted

from headwater.daemon.services import WebSettings

audit = logging.getLogger("headwater.audit")

LOOPBACK_NAMES = ("localhost",)
"""Names admitted on every daemon (IP addresses, 127.0.0.1 and [::1] among them, always are)."""
SHOWN_HOST_CHARS = 100  # a refused Host is quoted in the answer and the log up to this


def admitted(host: str | None, names: Collection[str]) -> bool:
    """Whether a request whose Host header is `host` may be answered."""
    if host is None:
        return True
    host = host.strip().lower()
    if _ip_address(host):
        return True
    return host_is_trusted(host, [*LOOPBACK_NAMES, *names])


def _ip_address(host: str) -> bool:
    """`host` ([port] aside) is an IP address: `10.0.0.5`, `10.0.0.5:80`, `[::1]:8080`."""
    if host.startswith("["):
        address, bracket, port = host[1:].partition("]")
        if not bracket or (port and not _port(port.removeprefix(":"))):
            return False
    else:
        address, _, port = host.partition(":")
        if port and not _port(port):
            return False
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 1 <= int(text) <= 65535


def _shown(host: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in host[:SHOWN_HOST_CHARS])


def install(app: Flask, settings: WebSettings) -> None:
    """Check the Host of every request before any other check or view runs."""
    names = tuple(settings.allowed_hosts)

    def check_host() -> None:
        host = request.environ.get("HTTP_HOST")
        if admitted(host, names):
            return
        shown = _shown(host or "")
        audit.warning("refused %s %s for Host %r", request.method, request.path, shown)
        message = (
            f"this daemon does not answer to the name {shown}; if it is yours, add it to "
            "--allowed-hosts (HEADWATER_ALLOWED_HOSTS)"
        )
        raise BadRequest(message)  # JSON under /api/ (errors.py), a page elsewhere

    app.before_request(check_host)
