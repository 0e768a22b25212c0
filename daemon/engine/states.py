"""States of executions and task runs, and the one table of legal transitions."""

from __future__ import annotations

from enum import StrEnum

from headwater.daemon.errors import HeadwaterError


class State(StrEnum):
    CREATED = "CREATED"
    """Created; a task run waits here for a worker (or for its retry time)."""
    QUEUED = "QUEUED"
    """Waiting for a concurrency slot of its flow, nothing else."""
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    RETRYING = "RETRYING"
    """Failed an attempt and waits for the next one."""
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    FAILED = "FAILED"
    KILLING = "KILLING"
    """Kill asked for; running processes are being stopped."""
    KILLED = "KILLED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"
    RESTARTED = "RESTARTED"
    """An ended execution asked to run its failed task runs again (Kestra's state of the
    same name); it moves on to RUNNING, or QUEUED when its flow has no free slot."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def failed(self) -> bool:
        """Counts as a failure for what follows (errors branches, the execution state)."""
        return self in (State.FAILED, State.KILLED)


TERMINAL = frozenset(
    {State.SUCCESS, State.WARNING, State.FAILED, State.KILLED, State.CANCELLED, State.SKIPPED}
)
ACTIVE = frozenset(
    {State.CREATED, State.QUEUED, State.RUNNING, State.PAUSED, State.RETRYING, State.KILLING}
)

_ENDINGS = {State.SUCCESS, State.WARNING, State.FAILED, State.KILLING, State.KILLED}
TRANSITIONS: dict[State, frozenset[State]] = {
    State.CREATED: frozenset(
        {State.QUEUED, State.RUNNING, State.SKIPPED, State.CANCELLED, State.PAUSED, *_ENDINGS}
    ),
    State.QUEUED: frozenset({State.CREATED, State.RUNNING, State.CANCELLED, *_ENDINGS}),
    State.RUNNING: frozenset({State.PAUSED, State.RETRYING, State.CREATED, *_ENDINGS}),
    State.PAUSED: frozenset({State.RUNNING, State.CREATED, *_ENDINGS}),
    State.RETRYING: frozenset({State.CREATED, State.RUNNING, *_ENDINGS}),
    State.KILLING: frozenset({State.KILLED, State.FAILED}),
    # Ended runs start again only by restart (failed ones) or replay (a new execution).
    # RESTARTED is an execution's state only, as in Kestra: FAILED or KILLED -> RESTARTED
    # -> RUNNING (or QUEUED, CANCELLED, FAILED by its flow's concurrency limit).
    State.FAILED: frozenset({State.CREATED, State.RUNNING, State.RESTARTED}),
    State.KILLED: frozenset({State.CREATED, State.RUNNING, State.RESTARTED}),
    State.RESTARTED: frozenset({State.QUEUED, State.RUNNING, State.CANCELLED, *_ENDINGS}),
    State.WARNING: frozenset({State.CREATED, State.RUNNING}),
    State.SUCCESS: frozenset(),
    State.CANCELLED: frozenset(),
    State.SKIPPED: frozenset(),
}


class IllegalTransition(HeadwaterError):
    def __init__(self, current: State, wanted: State, what: str) -> None:
        super().__init__(f"{what} cannot go from {current} to {wanted}")
        self.current, self.wanted = current, wanted


def check_transition(current: State, wanted: State, what: str = "state") -> State:
    """`wanted` when moving there from `current` is legal; raise otherwise."""
    if current == wanted or wanted in TRANSITIONS[current]:
        return wanted
    raise IllegalTransition(current, wanted, what)
