"""A small client of the daemon's JSON API for the CLI (sync, execute, control).

The server comes from `--server` or HEADWATER_SERVER (resolved in cli.py), the token only from
HEADWATER_TOKEN (never a flag, so it stays out of `ps` and shell history).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import quote

import click

TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.5  # how often `--wait` asks whether an execution has ended


class Client:
    def __init__(self, server: str, token: str | None = None) -> None:
        self.server = server.rstrip("/")
        self.token = token if token is not None else os.environ.get("HEADWATER_TOKEN")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self._call("POST", path, body)
        return answer if isinstance(answer, dict) else {}

    def get(self, path: str) -> Any:
        return self._call("GET", path, None)

    def wait_for_end(self, execution_id: str, poll: float = POLL_SECONDS) -> dict[str, Any]:
        """Poll an execution until it has an end date; its last JSON."""
        path = f"/api/v1/executions/{quote(execution_id, safe='')}"
        while True:
            row = self.get(path)
            if not isinstance(row, dict) or row.get("state", {}).get("endDate"):
                return row if isinstance(row, dict) else {}
            time.sleep(poll)

    def post_form(
        self, path: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]]
    ) -> dict[str, Any]:
        """POST multipart/form-data: text `fields` and `files` (name -> (file name, bytes))."""
        boundary = f"headwater-{uuid.uuid4().hex}"
        data = _multipart(boundary, fields, files)
        kind = f"multipart/form-data; boundary={boundary}"
        answer = self._send("POST", path, data, kind)
        return answer if isinstance(answer, dict) else {}

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        return self._send(method, path, data, "application/json")

    def _send(self, method: str, path: str, data: bytes | None, content_type: str) -> Any:
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise click.ClickException(
                f"{self.server}{path}: HTTP {exc.code}: {_message(exc)}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise click.ClickException(f"cannot reach {self.server}: {reason}") from None


def _message(exc: urllib.error.HTTPError) -> str:
    """The answer's message, and each of its `errors` (refused inputs, say) on a line."""
    try:
        body = json.loads(exc.read())
        lines = [str(body.get("message", exc.reason))]
    except (ValueError, AttributeError):
        return str(exc.reason)
    for error in body.get("errors") or []:
        if isinstance(error, dict) and "input" in error:
            lines.append(f"  input '{error['input']}': {error.get('message')}")
    return "\n".join(lines)


def _multipart(boundary: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> bytes:
    parts: list[bytes] = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'
        parts.append(head.encode() + value.encode() + b"\r\n")
    for name, (filename, content) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"; '
            f'filename="{_quoted(filename)}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + content + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def _quoted(text: str) -> str:
    """A name fit for a Content-Disposition parameter (quotes and line breaks escaped)."""
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
