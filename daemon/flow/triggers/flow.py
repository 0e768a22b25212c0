"""core.trigger.Flow: start when other flows' executions end."""

from __future__ import annotations

from headwater.daemon.flow.base import Model, StateName, Trigger
from headwater.daemon.flow.registry import trigger
from headwater.daemon.flow.types import Text

TERMINAL_STATES: tuple[StateName, ...] = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED")


class UpstreamFlow(Model):
    """An upstream flow whose executions this trigger waits for."""

    namespace: Text
    """Namespace of the upstream flow."""
    flowId: Text | None = None
    """Id of the upstream flow; any flow of the namespace when absent."""
    states: list[StateName] | None = None
    """End states that count; the trigger's states when absent."""


class Preconditions(Model):
    """Upstream flows (Kestra's newer form of flow-trigger conditions)."""

    id: Text | None = None
    """A name for this set of preconditions."""
    flows: list[UpstreamFlow]
    """The upstream flows."""


@trigger("core.trigger.Flow", old=["io.kestra.core.models.triggers.types.Flow"])
class FlowTrigger(Trigger):
    """Starts an execution when an upstream execution ends in one of `states`."""

    states: list[StateName] | None = None
    """End states of the upstream execution that fire (default: every terminal state)."""
    preconditions: Preconditions | None = None
    """Upstream flows, by namespace and id."""
