"""Implementations of the runnable task types, one module per family.

Importing this package registers every implementation with
`headwater.daemon.engine.taskapi.implements`, so the worker finds them by short name.

Failing, one rule for all: a task whose properties cannot be used (an expression that
fails, a path that leaves the working directory, a malformed duration) raises
`TaskFailed` before doing anything; a task that did its work and got a bad outcome (a
non-zero exit code, an HTTP 404, a Fail task's condition) returns
`TaskResult(state=FAILED, error=…)` with the outputs and metrics it has.
"""

from . import execution, http, log, scripts, values

__all__ = ["execution", "http", "log", "scripts", "values"]
