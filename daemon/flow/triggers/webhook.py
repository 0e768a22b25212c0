"""core.trigger.Webhook: an execution per HTTP call to the flow's webhook URL."""

from __future__ import annotations

from typing import Any

from headwater.daemon.flow.base import Trigger
from headwater.daemon.flow.registry import trigger
from headwater.daemon.flow.types import Text

MIN_KEY_LENGTH = 16


@trigger("core.trigger.Webhook", old=["io.kestra.core.models.triggers.types.Webhook"])
class Webhook(Trigger):
    """Starts an execution on each call to /api/v1/executions/webhook/{namespace}/{flowId}/{key}."""

    key: Text
    """The secret part of the URL; `{{ secret('NAME') }}` keeps it out of git."""

    @classmethod
    def check(cls, raw: dict[str, Any], path: Any, report: Any) -> None:
        key = raw.get("key")
        if isinstance(key, str) and "{{" not in key and not key.strip():
            report((*path, "key"), "webhook key is blank")
        elif isinstance(key, str) and "{{" not in key and len(key.strip()) < MIN_KEY_LENGTH:
            report(
                (*path, "key"),
                f"webhook key is {len(key.strip())} characters long; use at least "
                f"{MIN_KEY_LENGTH} (anyone who knows it can start the flow), or "
                "{{ secret('NAME') }} to keep it out of git",
            )
