"""A small client of the daemon's JSON API for the CLI (sync, execute, control).

The server comes from `--server` or HEADWATER_SERVER, the token only from
HEADWATER_TOKEN (never a flag, so it stays out of `ps` and shell history).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import click

TIMEOUT_SECONDS = 120.0


class Client:
    def __init__(self, server: str, token: str | None = None) -> None:
        self.server = server.rstrip("/")
        self.token = token if token is not None else os.environ.get("HEADWATER_TOKEN")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self._call("POST", path, body)
        return answer if isinstance(answer, dict) else {}

    def get(self, path: str) -> Any:
        return self._call("GET", path, None)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
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
    try:
        return str(json.loads(exc.read()).get("message", exc.reason))
    except (ValueError, AttributeError):
        return str(exc.reason)
