"""Base models every flow-language type builds on.

Inheritance stays one level deep: a task type extends `Task` (runnable) or `Flowable`,
a trigger type extends `Trigger`. Properties are documented with attribute docstrings,
which become the descriptions of the JSON Schema editors use.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from headwater.daemon.flow.types import (
    AnyValue,
    Duration,
    DynBool,
    DynNumber,
    PositiveInt,
    TaskId,
    Text,
    choice,
)

if TYPE_CHECKING:
    from headwater.daemon.flow.checks import Reporter
    from headwater.daemon.yamlsource import Path

    AnyTask = Any
    AnyCondition = Any
    AnyRunner = Any


class Model(BaseModel):
    """Strict about names (unknown properties are errors), lenient about scalars."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        # The attribute docstrings describe properties in the JSON Schema; flow/schema.py
        # reads them only when a schema is asked for (here they cost every class 1 ms).
        use_attribute_docstrings=False,
        coerce_numbers_to_str=True,
        validate_default=False,
        # A model's validator is built when it is first used, not when its class is
        # defined: a CLI call needs one validator (the flow's), not one per type.
        defer_build=True,
    )

    @classmethod
    def check(cls, raw: dict[str, Any], path: Path, report: Reporter) -> None:
        """Rules that span properties, run on the raw mapping so every error is found.

        Types override this; `report(path, message)` records a problem at a path.
        """


# -- retry -------------------------------------------------------------------------------


class _RetryBase(Model):
    maxAttempts: PositiveInt | None = Field(default=None, alias="maxAttempts")
    """Attempts in all, the first one included."""
    maxAttempt: PositiveInt | None = None
    """Older spelling of maxAttempts."""
    maxDuration: Duration | None = None
    """Time all attempts together may take."""
    warningOnRetry: DynBool = False
    """End in WARNING instead of SUCCESS when a retry was needed."""
    behavior: Literal["RETRY_FAILED_TASK", "CREATE_NEW_EXECUTION"] | None = None
    """For a flow-level retry: retry the failed task (default) or start a new execution."""


class ConstantRetry(_RetryBase):
    """The same interval between attempts."""

    type: Literal["constant", "CONSTANT", "Constant"]
    """Retry kind: constant."""
    interval: Duration | None = None
    """Time between attempts (ISO-8601 duration)."""


class ExponentialRetry(_RetryBase):
    """Intervals that grow by `delayFactor` up to `maxInterval`."""

    type: Literal["exponential", "EXPONENTIAL", "Exponential"]
    """Retry kind: exponential."""
    interval: Duration | None = None
    """The first interval (ISO-8601 duration); each next one is delayFactor times longer."""
    maxInterval: Duration | None = None
    """The longest interval between two attempts."""
    delayFactor: DynNumber = 2
    """Factor each interval is multiplied by (default 2)."""


class RandomRetry(_RetryBase):
    """A random interval between `minInterval` and `maxInterval`."""

    type: Literal["random", "RANDOM", "Random"]
    """Retry kind: random."""
    minInterval: Duration | None = None
    """The shortest interval between two attempts."""
    maxInterval: Duration | None = None
    """The longest interval between two attempts."""


def _retry_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind.lower() if isinstance(kind, str) else None


Retry = Annotated[
    Annotated[ConstantRetry, Tag("constant")]
    | Annotated[ExponentialRetry, Tag("exponential")]
    | Annotated[RandomRetry, Tag("random")],
    Discriminator(
        _retry_kind,
        custom_error_type="retry_type",
        custom_error_message="retry type must be constant, exponential or random",
    ),
]

LogLevel = Annotated[str, *choice("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR")]

# -- tasks ---------------------------------------------------------------------------------


class Task(Model):
    """Properties every task has. Runnable task types extend this."""

    flowable: ClassVar[bool] = False

    id: TaskId
    """Unique among all tasks of the flow (nested ones too); letters, digits, _ and -."""
    type: str
    """The task type, full (io.kestra.plugin.core.log.Log) or short (core.log.Log)."""
    description: Text | None = None
    """What the task is for (markdown)."""
    disabled: bool = False
    """A disabled task is skipped entirely."""
    allowFailure: DynBool = False
    """A failure makes the execution WARNING and the flow goes on."""
    timeout: Duration | None = None
    """Longest time one attempt may run (ISO-8601 duration)."""
    retry: Retry | None = None
    """How to retry a failed attempt."""
    runIf: Text | None = None
    """An expression; when it renders false the task is SKIPPED."""
    logLevel: LogLevel | None = None
    """Lowest level of log lines kept for this task."""


class Flowable(Task):
    """A task the executor resolves into child task runs."""

    flowable: ClassVar[bool] = True
    task_lists: ClassVar[tuple[str, ...]] = ("tasks", "errors")
    """The properties that hold lists of child tasks."""

    errors: list[AnyTask] | None = None
    """Tasks to run when a child task fails."""

    @classmethod
    def child_lists(cls, raw: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
        """Each (relative path, value) that holds a list of child tasks in a raw task."""
        for name in cls.task_lists:
            if name in raw:
                yield (name,), raw[name]


class NamespaceFiles(Model):
    """Which namespace files (from `_files/`) are written into the working directory."""

    enabled: DynBool = True
    """Write namespace files in (default true when this block is present)."""
    include: list[Text] | None = None
    """Glob patterns of files to include."""
    exclude: list[Text] | None = None
    """Glob patterns of files to leave out."""


# -- triggers --------------------------------------------------------------------------------

StateName = Literal[
    "CREATED",
    "QUEUED",
    "RUNNING",
    "PAUSED",
    "RETRYING",
    "SUCCESS",
    "WARNING",
    "FAILED",
    "KILLING",
    "KILLED",
    "CANCELLED",
    "SKIPPED",
]


# Defined before Trigger, so Trigger.labels resolves as the class is defined: models
# build when first used, and until then diagnose.py reads their fields as written.
class LabelPair(Model):
    """A label written as a {key, value} pair."""

    key: Text
    """The label's name."""
    value: Text
    """The label's value."""


class Trigger(Model):
    """Properties every trigger has."""

    id: TaskId
    """Unique among the flow's triggers."""
    type: str
    """The trigger type, full or short name."""
    description: Text | None = None
    """What the trigger is for."""
    disabled: bool = False
    """A disabled trigger starts nothing."""
    inputs: dict[str, AnyValue] | None = None
    """Inputs of the executions it starts."""
    labels: dict[str, AnyValue] | list[LabelPair] | None = None
    """Labels of the executions it starts."""
    conditions: list[AnyCondition] | None = None
    """Conditions that must all hold for the trigger to fire."""
    stopAfter: list[StateName] | None = None
    """Execution states that disable the trigger once one of its executions ends in them."""


class Condition(Model):
    """Properties every trigger condition has."""

    type: str
    """The condition type."""


class TaskRunner(Model):
    """Properties every task runner has."""

    type: str
    """The runner type: core.runner.Process or scripts.runner.docker.Docker."""


def tagged_union(models: list[tuple[str, type[BaseModel]]], resolve: Any, what: str) -> Any:
    """An `Annotated` union of `models`, chosen by `resolve(value) -> tag`."""
    members = tuple(Annotated[model, Tag(tag)] for tag, model in models)
    if not members:
        raise ValueError(f"no {what} types are registered")
    union: Any = members[0]
    for member in members[1:]:
        union = union | member
    return Annotated[union, Discriminator(resolve)]
