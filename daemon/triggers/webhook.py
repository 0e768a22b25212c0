"""core.trigger.Webhook: an execution per call to a flow's webhook URL.

The URL is `/api/v1/executions/webhook/{namespace}/{flowId}/{key}`. The key is read
from the deployed revision of the flow (rendering `{{ secret('NAME') }}` with the
engine's secrets, so the key can stay out of git) and compared in constant time. An
unknown flow, a deleted one, a disabled trigger and a wrong key all look the same to
the caller: no match. The key is never logged and never stored with the execution.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from headwater.daemon.engine.context import Renderer, text_of
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.engine.flows import FlowCache
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.flow.model import Flow
from headwater.daemon.flow.triggers.webhook import Webhook
from headwater.daemon.store.store import Row, Store

log = logging.getLogger(__name__)

TRIGGER_TYPE = "core.trigger.Webhook"
"""`trigger.type` of the executions a webhook starts."""
HIDDEN_HEADERS = ("authorization", "proxy-authorization", "cookie")
"""Request headers never kept in `trigger.headers`: they carry the caller's credentials."""


@dataclass(frozen=True)
class WebhookCall:
    """What a call to a webhook URL brings, as `trigger.*` shows it to the flow."""

    method: str
    body: Any = None
    """The body parsed as JSON when it parses, else its text (None when empty)."""
    headers: Mapping[str, list[str]] = field(default_factory=dict)
    """Header values by lower-case name (credential headers left out)."""
    parameters: Mapping[str, list[str]] = field(default_factory=dict)
    """Query parameters: every value of each name, in order."""


@dataclass(frozen=True)
class WebhookMatch:
    """A deployed flow revision and its Webhook trigger whose key the caller gave."""

    flow: Flow
    revision: int
    trigger: Webhook


class Webhooks:
    """Finds the Webhook trigger a URL names and starts its flow."""

    def __init__(
        self,
        store: Store,
        flows: FlowCache,
        renderer: Renderer,
        start: Callable[[ExecutionRequest], Row],
    ) -> None:
        self.store = store
        self.flows = flows
        self.renderer = renderer
        self.start = start

    def find(self, namespace: str, flow_id: str, key: str) -> WebhookMatch | None:
        """The enabled Webhook trigger of the deployed flow with this key, or None."""
        with self.store.read() as tx:
            row = tx.flow(namespace, flow_id)
        if row is None or row["deleted"]:
            return None
        revision = int(row["revision"])
        flow = self.flows.get(namespace, flow_id, revision)
        if _true(flow.disabled):
            return None
        found = None
        for trigger in flow.triggers or []:
            if isinstance(trigger, Webhook) and not trigger.disabled:
                expected = self._key(flow, trigger)
                # Every trigger is compared (no early exit), each in constant time.
                if expected is not None and _same(key, expected) and found is None:
                    found = WebhookMatch(flow, revision, trigger)
        return found

    def fire(self, namespace: str, flow_id: str, key: str, call: WebhookCall) -> Row | None:
        """Start an execution for a call; None when the URL matches no Webhook trigger.

        Raises InputsRefused (the trigger's inputs do not fit the flow) or another
        HeadwaterError (an expression in them failed); nothing is started then.
        """
        match = self.find(namespace, flow_id, key)
        if match is None:
            return None
        trigger_vars = {
            "type": TRIGGER_TYPE,
            "id": match.trigger.id,
            "method": call.method,
            "body": call.body,
            "headers": dict(call.headers),
            "parameters": dict(call.parameters),
        }
        variables = {
            "trigger": trigger_vars,
            "flow": {"namespace": namespace, "id": flow_id, "revision": match.revision},
        }
        inputs = self.renderer.render(dict(match.trigger.inputs or {}), variables)
        labels = self._labels(match.trigger, variables)
        request = ExecutionRequest(
            namespace,
            flow_id,
            revision=match.revision,
            inputs=dict(inputs),
            labels=labels,
            trigger=trigger_vars,
        )
        row = self.start(request)
        log.info(
            "webhook trigger %s started execution %s",
            match.trigger.id,
            row["id"],
            extra={"flow": f"{namespace}.{flow_id}", "execution": row["id"]},
        )
        return row

    def _key(self, flow: Flow, trigger: Webhook) -> str | None:
        """The trigger's key, rendered; None (and a log line naming why) when it cannot be."""
        try:
            key = text_of(
                self.renderer.render(trigger.key, {"flow": {"namespace": flow.namespace}})
            )
        except HeadwaterError as exc:  # e.g. a missing secret: its name is told, never a value
            log.warning(
                "webhook trigger %s of %s.%s cannot be called: its key: %s",
                trigger.id,
                flow.namespace,
                flow.id,
                exc,
            )
            return None
        self.renderer.masker.add([key])  # a key written in the flow is masked in logs too
        return key or None

    def _labels(self, trigger: Webhook, variables: Mapping[str, Any]) -> dict[str, str]:
        labels = trigger.labels
        pairs = (
            {pair.key: pair.value for pair in labels} if isinstance(labels, list) else labels or {}
        )
        rendered = self.renderer.render(dict(pairs), variables)
        return {str(k): text_of(v) for k, v in rendered.items()}


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")
