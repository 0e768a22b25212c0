"""core.http.Request against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fake_task_context import FakeContext

from headwater.daemon.engine.states import State
from headwater.daemon.engine.taskapi import TaskFailed, TaskResult
from headwater.daemon.engine.tasks.http import MAX_RESPONSE_BYTES

pytestmark = pytest.mark.integration


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output quiet

    def do_GET(self) -> None:
        if self.path == "/json":
            self.answer(200, b'{"rows": [1, 2]}', "application/json; charset=utf-8")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/json")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/slow":
            time.sleep(0.6)
            self.answer(200, b"late", "text/plain")
        elif self.path == "/latin1":
            self.answer(200, "café".encode("latin-1"), "text/plain; charset=ISO-8859-1")
        elif self.path == "/big":
            self.answer(200, b"x" * (MAX_RESPONSE_BYTES + 1), "text/plain")
        elif self.path == "/headers":
            seen = {k.lower(): v for k, v in self.headers.items()}
            self.answer(200, json.dumps(seen).encode(), "application/json")
        else:
            self.answer(404, b"no such thing", "text/plain")

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "16")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        echoed = {"body": body, "type": self.headers.get("Content-Type")}
        self.answer(201, json.dumps(echoed).encode(), "application/json")

    def answer(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Twice", "a")
        self.send_header("X-Twice", "b")
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up (the timeout tests)
            self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def call(tmp_path: Path, **raw: Any) -> TaskResult:
    return FakeContext({"id": "r", "type": "core.http.Request", **raw}, tmp_path).run()


def test_get_json(server: str, tmp_path: Path) -> None:
    result = call(tmp_path, uri=server + "/json")
    assert result.state == State.SUCCESS
    assert result.outputs["code"] == 200
    assert result.outputs["body"] == '{"rows": [1, 2]}'
    assert result.outputs["headers"]["content-type"] == "application/json; charset=utf-8"
    assert result.outputs["headers"]["x-twice"] == "a, b"
    assert result.outputs["uri"] == server + "/json"


def test_post_a_rendered_body_with_headers(server: str, tmp_path: Path) -> None:
    result = call(
        tmp_path,
        uri=server + "/echo",
        method="POST",
        body='{"name": "{{ inputs.name }}"}',
        headers={"X-Run": "{{ execution.id }}"},
    )
    assert result.state == State.SUCCESS
    assert result.outputs["code"] == 201
    assert json.loads(result.outputs["body"]) == {
        "body": '{"name": "World"}',
        "type": "application/json",
    }


def test_post_form_data(server: str, tmp_path: Path) -> None:
    result = call(
        tmp_path,
        uri=server + "/echo",
        method="{{ 'post' }}",
        formData={"a": "{{ inputs.n }}", "b": ["x y", "&"]},
    )
    assert json.loads(result.outputs["body"]) == {
        "body": "a=7&b=x+y&b=%26",
        "type": "application/x-www-form-urlencoded",
    }


def test_headers_are_sent(server: str, tmp_path: Path) -> None:
    result = call(
        tmp_path,
        uri=server + "/headers",
        headers={"Authorization": "Bearer {{ inputs.name }}"},
    )
    assert json.loads(result.outputs["body"])["authorization"] == "Bearer World"


def test_404_fails_the_task_with_its_outputs(server: str, tmp_path: Path) -> None:
    result = call(tmp_path, uri=server + "/nothing")
    assert result.state == State.FAILED
    assert result.error == f"HTTP 404 Not Found from {server}/nothing"
    assert result.outputs["code"] == 404
    assert result.outputs["body"] == "no such thing"


def test_404_with_allow_failed_succeeds(server: str, tmp_path: Path) -> None:
    result = call(tmp_path, uri=server + "/nothing", options={"allowFailed": True})
    assert result.state == State.SUCCESS
    assert result.outputs["code"] == 404


def test_redirects_are_followed_by_default(server: str, tmp_path: Path) -> None:
    result = call(tmp_path, uri=server + "/redirect")
    assert result.outputs["code"] == 200
    assert result.outputs["uri"] == server + "/json"


def test_redirect_not_followed_when_told(server: str, tmp_path: Path) -> None:
    result = call(tmp_path, uri=server + "/redirect", options={"followRedirects": False})
    assert result.state == State.SUCCESS
    assert result.outputs["code"] == 302
    assert result.outputs["headers"]["location"] == "/json"


def test_timeout(server: str, tmp_path: Path) -> None:
    # /slow answers after 0.6 s: a request that waited for it would have succeeded
    result = call(tmp_path, uri=server + "/slow", options={"timeout": "PT0.2S"})
    assert result.state == State.FAILED
    assert result.error == f"timed out after PT0.2S waiting for {server}/slow"


def test_connect_timeout_does_not_limit_the_wait_for_the_answer(
    server: str, tmp_path: Path
) -> None:
    result = call(
        tmp_path,
        uri=server + "/slow",
        options={"connectTimeout": "PT0.2S", "timeout": "PT5S"},
    )
    assert result.state == State.SUCCESS, result.error
    assert result.outputs["body"] == "late"


def test_body_is_decoded_by_its_charset(server: str, tmp_path: Path) -> None:
    assert call(tmp_path, uri=server + "/latin1").outputs["body"] == "café"


def test_a_body_over_the_cap_fails(server: str, tmp_path: Path) -> None:
    result = call(tmp_path, uri=server + "/big")
    assert result.state == State.FAILED
    assert result.error == f"the response from {server}/big is larger than 10485760 bytes"


def test_an_unreachable_server_fails_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = call(tmp_path, uri=f"http://127.0.0.1:{port}/")
    assert result.state == State.FAILED
    assert result.error is not None
    assert result.error.startswith(f"cannot reach http://127.0.0.1:{port}/: ")
    assert "refused" in result.error.lower()


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "ftp://example.org/x", "localhost:80"])
def test_only_http_urls_are_called(tmp_path: Path, uri: str) -> None:
    with pytest.raises(TaskFailed, match="uri must be an http:// or https:// URL"):
        call(tmp_path, uri=uri)


def test_a_cancelled_task_does_not_call(server: str, tmp_path: Path) -> None:
    ctx = FakeContext({"id": "r", "type": "core.http.Request", "uri": server + "/json"}, tmp_path)
    ctx.cancel.set()
    result = ctx.run()
    assert (result.state, result.error) == (State.FAILED, "killed")


def test_head_has_no_body(server: str, tmp_path: Path) -> None:
    result = call(tmp_path, uri=server + "/json", method="HEAD")
    assert (result.outputs["code"], result.outputs["body"]) == (200, "")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"method": "{{ 'FETCH' }}"}, "method must be one of GET, POST"),
        ({"formData": {"a": "1"}, "contentType": "multipart/form-data"}, "multipart"),
        ({"headers": {"X-Bad": "a\r\nInjected: yes"}}, "cannot send the request"),
        ({"options": {"timeout": "{{ 'later' }}"}}, "options.timeout must be an ISO-8601"),
        ({"options": {"followRedirects": "{{ 'maybe' }}"}}, "must be true or false"),
    ],
)
def test_unusable_properties_fail_before_calling(
    server: str, tmp_path: Path, raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(TaskFailed, match=message):
        call(tmp_path, uri=server + "/json", **raw)
