"""core.flow.Subflow: runs another flow."""

from __future__ import annotations

from headwater.daemon.flow.base import Flowable, LabelPair
from headwater.daemon.flow.registry import task
from headwater.daemon.flow.types import AnyValue, DynBool, PositiveInt, Text


@task(
    "core.flow.Subflow",
    old=["io.kestra.core.tasks.flows.Subflow", "io.kestra.core.tasks.flows.Flow"],
    flowable=True,
)
class Subflow(Flowable):
    """Starts an execution of another flow; outputs executionId, state and outputs."""

    namespace: Text
    """Namespace of the flow to run."""
    flowId: Text
    """Id of the flow to run."""
    inputs: dict[str, AnyValue] | None = None
    """Inputs of the child execution."""
    wait: DynBool = True
    """Wait for the child execution to end."""
    transmitFailed: DynBool = True
    """Fail this task when the child execution fails (with wait)."""
    labels: dict[str, AnyValue] | list[LabelPair] | None = None
    """Labels of the child execution."""
    revision: PositiveInt | None = None
    """Run this revision of the child instead of the deployed one."""
    inheritLabels: DynBool = False
    """Give the child execution this execution's labels."""
