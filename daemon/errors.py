"""Errors that reach a user.

One base, `HeadwaterError`, and a few specific kinds that carry what a user needs to
find the problem: the file, line and column, and the flow or task it is about.
Control-flow signals (a task asking to pause, a run being killed) are not errors and
live with the executor.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class HeadwaterError(Exception):
    """Base of every error Headwater reports to a user."""


@dataclass(frozen=True, order=True)
class Position:
    """A place in a file: 1-based line and column, the path relative to the repository."""

    path: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.path
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a flow file, printed as `path:line:col: error: message`."""

    position: Position
    message: str
    severity: str = "error"
    field: str = ""  # the property path inside the flow, e.g. `tasks[2].retry.interval`

    def __str__(self) -> str:
        return f"{self.position}: {self.severity}: {self.message}"

    def sort_key(self) -> tuple[str, int, int, str]:
        p = self.position
        return (p.path, p.line, p.column, self.message)

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.position.path,
            "line": self.position.line,
            "column": self.position.column,
            "severity": self.severity,
            "field": self.field,
            "message": self.message,
        }


@dataclass
class ValidationFailed(HeadwaterError):
    """One or more flow files are invalid; `diagnostics` holds every problem, sorted."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.diagnostics = sorted(self.diagnostics, key=Diagnostic.sort_key)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)


class ExecutionNotFound(HeadwaterError):
    """No execution has this id."""

    def __init__(self, execution_id: str) -> None:
        super().__init__(f"execution {execution_id} does not exist")
        self.execution_id = execution_id


class ExecutionStateConflict(HeadwaterError):
    """The execution's state does not allow what was asked (kill an ended one, restart a
    successful one); the message says which state it is in and what would be allowed."""

    def __init__(self, execution_id: str, state: str, message: str) -> None:
        super().__init__(f"execution {execution_id} is {state}: {message}")
        self.execution_id = execution_id
        self.state = state
