"""Security headers on every answer, pages and API alike.

- `Content-Security-Policy`: the page runs only scripts and styles served from this
  site as files (no inline script, style attribute or event handler runs), so markup
  that slipped into a page by a bug can neither run nor load anything. `frame-ancestors
  'none'` and `X-Frame-Options: DENY` keep another site from framing the page to trick
  a click on Kill or Replay.
- `X-Content-Type-Options: nosniff`: a downloaded output file or a log served as text is
  never run as a script or a page because its bytes look like one.
- `Referrer-Policy: same-origin`: an execution's URL (its id, its filters) does not leak
  to a site the page links to; the page's own requests keep their `Origin`, which the
  write check reads (auth.py).
"""

from __future__ import annotations

from flask import Flask, Response

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # data: for the page's empty favicon
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""What a page may load and run: files from this site, nothing inline, no framing."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""Sent with every answer; a view that sets one of them keeps its own."""


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def install(app: Flask) -> None:
    app.after_request(add_security_headers)
