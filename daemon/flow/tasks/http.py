"""core.http.Request: one HTTP call."""

from __future__ import annotations

from typing import Annotated, Any

from headwater.daemon.flow.base import Model, Task
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import AnyValue, Duration, DynBool, Text, TextMap, choice


class RequestOptions(Model):
    """Connection options of an HTTP request."""

    timeout: Duration | None = None
    """Longest time to wait for the whole response."""
    connectTimeout: Duration | None = None
    """Longest time to wait for the connection."""
    followRedirects: DynBool = True
    """Follow 3xx redirects."""
    allowFailed: DynBool = False
    """Do not fail the task on a 4xx or 5xx answer."""


Method = Annotated[str, *choice("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")]


@task("core.http.Request", old=["io.kestra.plugin.fs.http.Request"])
class Request(Task):
    """Sends an HTTP request; outputs `code`, `headers` and `body`."""

    uri: Text
    """The URL to call."""
    method: Method = "GET"
    """HTTP method."""
    headers: TextMap | None = None
    """Request headers."""
    body: Text | None = None
    """Request body (text; use `json` filter for JSON)."""
    formData: dict[str, AnyValue] | None = None
    """Form fields, sent as application/x-www-form-urlencoded or multipart."""
    contentType: Text | None = None
    """Content-Type of the body."""
    options: RequestOptions | None = None
    """Timeouts and redirect handling."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        if raw.get("body") is not None and raw.get("formData") is not None:
            report((*path, "formData"), "give either 'body' or 'formData', not both", key=True)
