"""Conditions of a flow trigger on the upstream execution."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from headwater.daemon.flow.base import Condition, StateName
from headwater.daemon.flow.registry import condition
from headwater.daemon.flow.types import Text

_OLD = "io.kestra.core.models.conditions.types."


@condition("core.condition.ExecutionFlow", old=[_OLD + "ExecutionFlowCondition"])
class ExecutionFlow(Condition):
    """The upstream execution is of this flow."""

    namespace: Text
    """Namespace of the upstream flow."""
    flowId: Text
    """Id of the upstream flow."""


@condition("core.condition.ExecutionNamespace", old=[_OLD + "ExecutionNamespaceCondition"])
class ExecutionNamespace(Condition):
    """The upstream execution is of a flow in this namespace."""

    namespace: Text
    """The namespace."""
    comparison: Literal["EQUALS", "PREFIX", "SUFFIX"] = "EQUALS"
    """How the namespace is compared."""
    prefix: bool = False
    """Older form of comparison: PREFIX."""


@condition("core.condition.ExecutionStatus", old=[_OLD + "ExecutionStatusCondition"])
class ExecutionStatus(Condition):
    """The upstream execution ended in (or not in) these states."""

    in_: list[StateName] | None = Field(default=None, alias="in")
    """States that count."""
    notIn: list[StateName] | None = None
    """States that do not count."""


@condition("core.condition.Expression", old=[_OLD + "VariableCondition"])
class Expression(Condition):
    """An expression over the upstream execution that must render true."""

    expression: Text
    """The expression."""
