"""The flow: the root of a flow file, and the assembly of every registered type.

Importing this module imports every type module under `tasks/` and `triggers/` (each
registers itself), then builds the tagged unions `AnyTask`, `AnyTrigger`,
`AnyCondition` and `AnyRunner` from the registry and tells the models that refer to
them where to find them. Adding a type is adding a module; nothing here changes.

No validator is built here: each model builds its own when first used (`defer_build`
in `base.Model`), so the flow's validator, which holds every type, is built by the
first validation, and a command that validates nothing does not pay for it (issue 12).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field

from headwater.daemon import defaults
from headwater.daemon.flow import registry as reg
from headwater.daemon.flow import tasks as task_pkg
from headwater.daemon.flow import triggers as trigger_pkg
from headwater.daemon.flow.base import LabelPair, Model, Retry, tagged_union
from headwater.daemon.flow.inputs import AnyInput
from headwater.daemon.flow.types import (
    FLOW_ID,
    NAMESPACE,
    AnyValue,
    DynBool,
    PositiveInt,
    Text,
    identifier,
)


def _import_all(package: Any) -> None:
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


_import_all(task_pkg)
_import_all(trigger_pkg)


def _resolver(kind: reg.Kind) -> Any:
    def resolve(value: Any) -> str | None:
        name = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        entry = reg.REGISTRY.resolve(name, kind)
        return entry.short if entry else None

    return resolve


def _union(kind: reg.Kind) -> Any:
    return tagged_union(
        [(e.short, e.model) for e in reg.REGISTRY.entries(kind)], _resolver(kind), kind
    )


if TYPE_CHECKING:
    AnyTask = Any
    AnyTrigger = Any
    AnyCondition = Any
    AnyRunner = Any
else:
    AnyTask = _union("task")
    AnyTrigger = _union("trigger")
    AnyCondition = _union("condition")
    AnyRunner = _union("runner")

FlowId = Annotated[str, *identifier("flow id", FLOW_ID, defaults.FLOW_ID_MAX)]
Namespace = Annotated[str, *identifier("namespace", NAMESPACE, defaults.NAMESPACE_MAX)]
OutputId = Annotated[str, *identifier("output id", FLOW_ID)]
OutputType = Literal[
    "STRING", "INT", "FLOAT", "BOOLEAN", "DATETIME", "DATE", "TIME", "DURATION", "JSON",
    "URI", "FILE", "SECRET", "ARRAY", "YAML", "EMAIL", "SELECT", "MULTISELECT", "ENUM",
]  # fmt: skip


class FlowOutput(Model):
    """A value the flow returns when it ends."""

    id: OutputId
    """Name of the output."""
    type: OutputType = "STRING"
    """Type the rendered value is checked against."""
    value: AnyValue
    """The value, usually an expression over task outputs."""
    description: Text | None = None
    """What the output is."""
    displayName: Text | None = None
    """Label shown on the page."""
    required: bool = True
    """Fail the execution when the value cannot be rendered."""


class Concurrency(Model):
    """How many executions of this flow may run at once, and what happens to more."""

    limit: PositiveInt
    """Most executions running, paused or being killed at once."""
    behavior: Literal["QUEUE", "CANCEL", "FAIL"] = "QUEUE"
    """What happens to an execution over the limit: wait, be cancelled, or fail."""


class PluginDefault(Model):
    """Default property values for every task or trigger of a type."""

    type: Text
    """A type name (full or short), or a prefix such as io.kestra.plugin.scripts."""
    values: dict[str, AnyValue]
    """Property values used where the task does not set them."""
    forced: bool = False
    """Override the task's own values too."""


class Flow(Model):
    """A flow: tasks run one after another, started by triggers or by hand."""

    id: FlowId
    """The flow's id; must equal the file name without .yaml."""
    namespace: Namespace
    """The flow's namespace; must equal its folder path with / read as ."""
    revision: int | None = None
    """Ignored: revisions are assigned by the server from git."""
    description: Text | None = None
    """What the flow does (markdown)."""
    labels: dict[str, AnyValue] | list[LabelPair] | None = None
    """Labels of every execution; keys starting with system_ are reserved."""
    inputs: list[AnyInput] | None = None
    """Typed inputs, given when an execution starts."""
    variables: dict[str, AnyValue] | None = None
    """Values available as {{ vars.<name> }}."""
    tasks: list[AnyTask] = Field(min_length=1)
    """The tasks, run one after another."""
    errors: list[AnyTask] | None = None
    """Tasks run when a task fails."""
    finally_: list[AnyTask] | None = Field(default=None, alias="finally")
    """Tasks run at the end, whatever happened."""
    outputs: list[FlowOutput] | None = None
    """Values the flow returns."""
    triggers: list[AnyTrigger] | None = None
    """What starts the flow: schedules, webhooks, other flows, files."""
    concurrency: Concurrency | None = None
    """Limit on executions running at once."""
    retry: Retry | None = None
    """Flow-level retry of failed executions."""
    pluginDefaults: list[PluginDefault] | None = None
    """Default property values by type."""
    taskDefaults: list[PluginDefault] | None = None
    """Older name of pluginDefaults."""
    disabled: DynBool = False
    """A disabled flow is deployed but starts no execution."""


def _offer_unions() -> None:
    """Let every model resolve the names its annotations use when it is built.

    Inherited annotations are resolved in the subclass's module, and the unions exist
    only here, so the names the base classes use are offered to every model as the
    namespace pydantic reads when it builds a deferred model.
    """
    from headwater.daemon.flow import base, types

    namespace = {
        **vars(types),
        **vars(base),
        "AnyTask": AnyTask,
        "AnyTrigger": AnyTrigger,
        "AnyCondition": AnyCondition,
        "AnyRunner": AnyRunner,
    }
    models: list[type[BaseModel]] = [Flow]
    for module in (task_pkg, trigger_pkg):
        for info in pkgutil.iter_modules(module.__path__):
            mod = importlib.import_module(f"{module.__name__}.{info.name}")
            models.extend(
                v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, BaseModel)
            )
    models.extend(v for v in vars(base).values() if isinstance(v, type) and issubclass(v, Model))
    for model in models:
        model.__pydantic_parent_namespace__ = namespace


_offer_unions()
