"""The one table of legal state transitions."""

from __future__ import annotations

import pytest

from headwater.daemon.engine.states import IllegalTransition, State, check_transition


def test_legal_transitions_pass() -> None:
    assert check_transition(State.CREATED, State.RUNNING) is State.RUNNING
    assert check_transition(State.RUNNING, State.KILLING) is State.KILLING
    assert check_transition(State.PAUSED, State.SUCCESS) is State.SUCCESS


def test_an_ended_run_cannot_start_again_by_accident() -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_transition(State.SUCCESS, State.RUNNING, "task run load")
    assert str(caught.value) == "task run load cannot go from SUCCESS to RUNNING"
