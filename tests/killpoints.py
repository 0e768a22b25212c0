"""Kill points: stop a real process at a chosen call, inside its transaction, and kill it.

A test starts the process through this file rather than `python -m MODULE`:

    python tests/killpoints.py KILLPOINT MODULE [ARGS...]
    python tests/killpoints.py KILLPOINT MODULE:FUNCTION [ARGS...]

KILLPOINT is a `Killpoint` as JSON. Before MODULE runs (as `__main__`, like `python -m`)
or FUNCTION is called with ARGS, the launcher wraps the function the kill point names
(`module:Class.method`, patched on the class, so every caller meets it): when its
`call`-th call has returned, it writes the marker file and blocks forever, still inside
its caller's transaction. The test waits for the marker (`reached`), checks where the
process stands — the marker says whether the call's transaction is open, and
`write_lock_held` asks SQLite from outside whether someone holds the write lock — and
ends it with SIGKILL. Headwater's code knows nothing of this: the probe is the test's.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import runpy
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from waiting import wait_until

LAUNCHER = Path(__file__).resolve()
REACH_TIMEOUT = 30.0  # seconds for a process to reach its kill point (a busy machine)
ROW_KEYS = ("id", "namespace", "flow_id", "revision", "state", "commit_sha", "trigger_key")
"""What the marker keeps of each row (dict) the call was given."""


@dataclass(frozen=True)
class Killpoint:
    """Where a process stops: after the `call`-th call of `target` returned."""

    target: str
    """`module:Class.method` (or `module:function`, for callers that look it up there)."""
    marker: Path
    """Written when the process stopped there (JSON: see `Reached`)."""
    call: int = 1

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "marker": str(self.marker)})

    @classmethod
    def from_json(cls, text: str) -> Killpoint:
        values = json.loads(text)
        return cls(values["target"], Path(values["marker"]), int(values["call"]))


@dataclass(frozen=True)
class Reached:
    """What the stopped process wrote in its marker."""

    target: str
    call: int
    pid: int
    in_transaction: bool | None
    """Whether the connection of the call's transaction had it open (None: no transaction
    among the call's arguments)."""
    rows: list[dict[str, Any]]
    """The rows (dicts) the call was given, reduced to ROW_KEYS."""


def command(killpoint: Killpoint, entry: str, *args: str) -> list[str]:
    """The command line that runs `entry` (MODULE or MODULE:FUNCTION) with `killpoint`."""
    return [sys.executable, str(LAUNCHER), killpoint.to_json(), entry, *args]


def reached(
    killpoint: Killpoint, process: subprocess.Popen[Any], timeout: float = REACH_TIMEOUT
) -> Reached:
    """Wait until the process stopped at its kill point (fails if it exited first)."""

    def stopped() -> Reached | None:
        if killpoint.marker.exists():
            return Reached(**json.loads(killpoint.marker.read_text()))
        if process.poll() is not None:
            raise AssertionError(f"exited ({process.returncode}) before {killpoint.target}")
        return None

    found = wait_until(stopped, timeout, f"the process to stop at {killpoint.target}")
    assert found is not None
    return found


def write_lock_held(database: Path) -> bool:
    """Whether a connection holds SQLite's write lock on `database` (probed, nothing written)."""
    connection = sqlite3.connect(str(database), timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as error:
        if "locked" not in str(error):
            raise
        return True
    finally:
        connection.close()


# -- in the launched process -------------------------------------------------------------


def arm(killpoint: Killpoint) -> None:
    """Wrap the kill point's function where it is defined."""
    module_name, _, qualname = killpoint.target.partition(":")
    *owners, name = qualname.split(".")
    owner: Any = importlib.import_module(module_name)
    for part in owners:
        owner = getattr(owner, part)
    setattr(owner, name, _stopping(getattr(owner, name), killpoint))


def _stopping(function: Callable[..., Any], killpoint: Killpoint) -> Callable[..., Any]:
    lock = threading.Lock()
    calls = [0]

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        with lock:
            calls[0] += 1
            here = calls[0] == killpoint.call
        if here:
            _stop(killpoint, [*args, *kwargs.values()])
        return result

    return wrapper


def _stop(killpoint: Killpoint, arguments: Sequence[Any]) -> None:
    """Say where this process stands, then block this thread until the process is killed."""
    found = Reached(
        killpoint.target,
        killpoint.call,
        os.getpid(),
        _in_transaction(arguments),
        [
            {key: value[key] for key in ROW_KEYS if key in value}
            for value in arguments
            if isinstance(value, dict)
        ],
    )
    partial = killpoint.marker.with_name(killpoint.marker.name + ".partial")
    partial.write_text(json.dumps(asdict(found), default=str))
    partial.replace(killpoint.marker)  # the test never reads half a marker
    threading.Event().wait()


def _in_transaction(arguments: Sequence[Any]) -> bool | None:
    """Whether the transaction among the arguments (a store's `Tx`) is open."""
    for value in arguments:
        connection = getattr(value, "connection", None)
        if connection is not None and callable(getattr(connection, "in_transaction", None)):
            return bool(connection.in_transaction())
    return None


def main(argv: Sequence[str]) -> None:
    spec, entry, *args = argv
    arm(Killpoint.from_json(spec))
    module, _, function = entry.partition(":")
    if function:
        getattr(importlib.import_module(module), function)(*args)
        return
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
