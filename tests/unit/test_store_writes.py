"""The write gate: a batch of log lines waits for every other write of the process; and
the reasons a store gives for refusing a write, in an operator's words."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.exc import OperationalError
from waiting import wait_until

from headwater.daemon.store.writes import WriteGate, reason_of, store_unavailable


def test_writes_take_turns_and_a_background_write_waits_for_all_of_them() -> None:
    gate = WriteGate()
    order: list[str] = []
    first_in, release_first = threading.Event(), threading.Event()

    def ordinary(name: str, hold: threading.Event | None) -> None:
        with gate.ordinary():
            if hold is not None:
                first_in.set()
                hold.wait(10)
            order.append(name)

    def background() -> None:
        gate.wait_for_quiet()
        order.append("log batch")

    renewal = threading.Thread(target=ordinary, args=("lease renewal", release_first))
    renewal.start()
    first_in.wait(10)
    batch = threading.Thread(target=background)
    batch.start()
    finish = threading.Thread(target=ordinary, args=("finish attempt", None))
    finish.start()
    wait_until(lambda: gate.writers == 2, what="the second writer to wait for its turn")
    assert order == []  # one writer at a time
    release_first.set()
    for thread in (renewal, finish, batch):
        thread.join(10)
    assert order == ["lease renewal", "finish attempt", "log batch"]


def test_a_background_write_goes_at_once_when_nothing_else_writes() -> None:
    done = threading.Event()
    threading.Thread(target=lambda: (WriteGate().wait_for_quiet(), done.set())).start()
    assert done.wait(10)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("database is locked", "the store is locked by another program"),
        ("database or disk is full", "the store's disk is full"),
        ("attempt to write a readonly database", "the store is read-only"),
        ("disk I/O error", "the store cannot be written (OperationalError"),
    ],
)
def test_the_reason_of_a_refused_write(message: str, reason: str) -> None:
    error = OperationalError("INSERT …", {}, Exception(message))
    assert reason_of(error).startswith(reason)
    assert message in reason_of(error)
    assert store_unavailable(error) == reason_of(error)


def test_other_errors_are_not_the_store_refusing() -> None:
    assert store_unavailable(ValueError("database is locked")) is None
