"""core.http.Request: one HTTP call with the standard library's urllib.

Only http and https URLs are called (urllib would also read `file:` and `ftp:` ones).
`options.timeout` (default 30 s) bounds connecting and each wait for data, and the
body is read in chunks until that time is up; `options.connectTimeout` bounds the
connection (TLS handshake included) alone. Cancellation is looked at before the call
and between chunks of the body, so a stalled server holds a killed task no longer
than the timeout. A body over MAX_RESPONSE_BYTES fails the task rather than being
cut silently.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from typing import Any

from headwater.daemon.engine.context import text_of
from headwater.daemon.engine.states import State
from headwater.daemon.engine.taskapi import TaskContext, TaskFailed, TaskResult, implements
from headwater.daemon.engine.tasks.properties import duration, flag, model_of, text_map
from headwater.daemon.flow.tasks.http import Request, RequestOptions

DEFAULT_TIMEOUT_SECONDS = 30.0  # options.timeout when a Request gives none
MAX_RESPONSE_BYTES = 10 * 1024 * 1024  # a longer body fails the task (outputs live in the store)
READ_CHUNK_BYTES = 64 * 1024  # one read of the body; cancel and timeout are checked between
DEFAULT_BODY_TYPE = "application/json"  # Content-Type of a `body` when none is given (Kestra's)
FORM_TYPE = "application/x-www-form-urlencoded"
SCHEMES = ("http", "https")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class _Call:
    uri: str
    method: str
    headers: dict[str, str]
    data: bytes | None
    timeout: float
    timeout_text: str
    connect_timeout: float | None
    follow_redirects: bool
    allow_failed: bool


@dataclass(frozen=True)
class _Answer:
    code: int
    reason: str
    uri: str
    headers: dict[str, str]
    body: str


class _Stop(Exception):
    """The call ended without an answer (timed out, cancelled, body too large)."""


@implements("core.http.Request")
def request(ctx: TaskContext) -> TaskResult:
    """Send the request; outputs `code`, `headers` (lower-case names), `body` and `uri`."""
    call = _prepare(ctx, model_of(ctx, Request))
    if ctx.cancel.is_set():
        return TaskResult(State.FAILED, error="killed")
    try:
        answer = _send(call, ctx)
    except _Stop as stop:
        return TaskResult(State.FAILED, error=str(stop))
    outputs = {
        "code": answer.code,
        "headers": answer.headers,
        "body": answer.body,
        "uri": answer.uri,
    }
    if answer.code >= 400 and not call.allow_failed:
        error = f"HTTP {answer.code} {answer.reason} from {call.uri}"
        return TaskResult(State.FAILED, outputs, error=error)
    return TaskResult(outputs=outputs)


# -- preparing -----------------------------------------------------------------------------


def _prepare(ctx: TaskContext, task: Request) -> _Call:
    uri = ctx.render_text(task.uri).strip()
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme not in SCHEMES or not urllib.parse.urlsplit(uri).netloc:
        raise TaskFailed(f"uri must be an http:// or https:// URL, got {uri!r}")
    method = ctx.render_text(task.method).strip().upper()
    if method not in METHODS:
        raise TaskFailed(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    options = task.options or RequestOptions()
    timeout = duration(ctx, options.timeout, "options.timeout")
    task_timeout = duration(ctx, task.timeout, "timeout")
    if task_timeout is not None and (timeout is None or task_timeout.seconds < timeout.seconds):
        timeout = task_timeout
    connect = duration(ctx, options.connectTimeout, "options.connectTimeout")
    headers = text_map(ctx, task.headers, "headers")
    data, content_type = _body(ctx, task)
    if content_type and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = content_type
    return _Call(
        uri=uri,
        method=method,
        headers=headers,
        data=data,
        timeout=timeout.seconds if timeout else DEFAULT_TIMEOUT_SECONDS,
        timeout_text=timeout.text if timeout else f"PT{DEFAULT_TIMEOUT_SECONDS:g}S",
        connect_timeout=connect.seconds if connect else None,
        follow_redirects=flag(ctx, options.followRedirects, "options.followRedirects"),
        allow_failed=flag(ctx, options.allowFailed, "options.allowFailed"),
    )


def _body(ctx: TaskContext, task: Request) -> tuple[bytes | None, str | None]:
    """The bytes to send and their content type (None, None without a body)."""
    content_type = ctx.render_text(task.contentType).strip() if task.contentType else None
    if task.formData is not None:
        if content_type and content_type.lower().startswith("multipart/"):
            raise TaskFailed("formData as multipart/form-data is not supported; use urlencoded")
        form = ctx.render(task.formData)
        if not isinstance(form, dict):
            raise TaskFailed("formData must be a map of field names to values")
        fields = [(str(k), v) for k, v in form.items()]
        pairs = [
            (k, text_of(item)) for k, v in fields for item in (v if isinstance(v, list) else [v])
        ]
        return urllib.parse.urlencode(pairs).encode("ascii"), content_type or FORM_TYPE
    if task.body is not None:
        return ctx.render_text(task.body).encode("utf-8"), content_type or DEFAULT_BODY_TYPE
    return None, None


# -- sending ------------------------------------------------------------------------------


def _send(call: _Call, ctx: TaskContext) -> _Answer:
    request = urllib.request.Request(
        call.uri, data=call.data, headers=call.headers, method=call.method
    )
    deadline = time.monotonic() + call.timeout
    try:
        response = _opener(call).open(request, timeout=call.timeout)
    except urllib.error.HTTPError as error:  # 4xx, 5xx, and 3xx when not following
        response = error
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Stop(_network_error(call, exc)) from exc
    except ValueError as exc:  # http.client refuses a header with a line break, and such
        raise TaskFailed(f"cannot send the request to {call.uri}: {exc}") from exc
    with response:
        try:
            body = _read(response, deadline, call, ctx)
        except (OSError, http.client.HTTPException) as exc:
            raise _Stop(_network_error(call, exc)) from exc
        code = response.status or 0
        return _Answer(
            code=code,
            reason=_reason(code, getattr(response, "reason", "") or ""),
            uri=response.url or call.uri,
            headers=_headers(response.headers),
            body=_decode(body, response.headers),
        )


def _read(response: Any, deadline: float, call: _Call, ctx: TaskContext) -> bytes:
    if call.method == "HEAD" or response.fp is None:
        return b""
    chunks: list[bytes] = []
    size = 0
    read = getattr(response, "read1", response.read)
    while chunk := read(READ_CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise _Stop(f"the response from {call.uri} is larger than {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
        if ctx.cancel.is_set():
            raise _Stop("killed")
        if time.monotonic() > deadline:
            raise _Stop(f"timed out after {call.timeout_text} reading the response from {call.uri}")
    return b"".join(chunks)


def _network_error(call: _Call, exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"timed out after {call.timeout_text} waiting for {call.uri}"
    text = str(reason) or type(reason).__name__
    return f"cannot reach {call.uri}: {text}"


def _reason(code: int, reason: str) -> str:
    if reason:
        return reason
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def _headers(message: Message) -> dict[str, str]:
    """Header names lower-cased; a repeated header's values joined with ', '."""
    found: dict[str, str] = {}
    for name, value in message.items():
        key = name.lower()
        found[key] = f"{found[key]}, {value}" if key in found else value
    return found


def _decode(body: bytes, headers: Message) -> str:
    charset = headers.get_content_charset() or "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


# -- the opener: only http(s), redirects on or off, a separate connect timeout ------------


def _opener(call: _Call) -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    redirects = _Redirects() if call.follow_redirects else _NoRedirects()
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.ProxyHandler(),
        _HTTPHandler(call.connect_timeout),
        _HTTPSHandler(call.connect_timeout),
        urllib.request.HTTPDefaultErrorHandler(),
        redirects,
        urllib.request.HTTPErrorProcessor(),
    ]
    for handler in handlers:
        opener.add_handler(handler)
    return opener


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but only to http and https URLs."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in SCHEMES:
            return None  # the 3xx itself becomes the answer
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is the answer: its code, headers (Location) and body are the outputs."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, connect_timeout: float | None) -> None:
        super().__init__()
        self.connect_timeout = connect_timeout

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)

    def _connection(self, host: str, **kwargs: Any) -> http.client.HTTPConnection:
        return _HTTPConnection(host, connect_timeout=self.connect_timeout, **kwargs)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, connect_timeout: float | None) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(context=self.tls)
        self.connect_timeout = connect_timeout

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req, context=self.tls)

    def _connection(self, host: str, **kwargs: Any) -> http.client.HTTPSConnection:
        return _HTTPSConnection(host, connect_timeout=self.connect_timeout, **kwargs)


class _HTTPConnection(http.client.HTTPConnection):
    """Connects within `connect_timeout`, then waits for data within the usual timeout."""

    def __init__(self, host: str, *, connect_timeout: float | None, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.connect_timeout = connect_timeout

    def connect(self) -> None:
        _connect_within(self, super().connect)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, *, connect_timeout: float | None, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.connect_timeout = connect_timeout

    def connect(self) -> None:
        _connect_within(self, super().connect)


def _connect_within(conn: _HTTPConnection | _HTTPSConnection, connect: Any) -> None:
    wait = conn.timeout
    if conn.connect_timeout is not None:
        conn.timeout = conn.connect_timeout
    try:
        connect()
    finally:
        conn.timeout = wait
    if conn.sock is not None:
        conn.sock.settimeout(wait)
