"""Flow concurrency limits, observed through real executions on a real engine: QUEUE
waits and starts in creation order as slots free, CANCEL and FAIL end the newcomer at
once, a killed or finished execution frees its slot at once, and two executors on
one database never let more through than the limit."""

from __future__ import annotations

import threading

import pytest
from conftest import Flows
from waiting import wait_until

from headwater.daemon.engine.engine import Engine
from headwater.daemon.engine.executor import ExecutionRequest, Executor
from headwater.daemon.flow.model import Flow

pytestmark = pytest.mark.postgres

PAUSED_FLOW = """
concurrency: {{limit: {limit}, behavior: {behavior}}}
tasks:
  - {{id: hold, type: core.flow.Pause}}
  - {{id: done, type: core.log.Log, message: "done {{{{ execution.id }}}}"}}
"""


def start(flows: Flows, flow: Flow, count: int) -> list[str]:
    return [
        str(flows.engine.start_execution(ExecutionRequest(flow.namespace, flow.id))["id"])
        for _ in range(count)
    ]


def states(flows: Flows, ids: list[str]) -> list[str]:
    return [flows.state_of(i) for i in ids]


def history(flows: Flows, execution_id: str) -> list[str]:
    row = flows.engine.execution(execution_id)
    assert row is not None
    return [h["state"] for h in row["histories"]]


def test_queue_starts_waiting_executions_in_creation_order_as_slots_free(flows: Flows) -> None:
    flow = flows.deploy(PAUSED_FLOW.format(limit=1, behavior="QUEUE"))
    first, second, third = start(flows, flow, 3)
    # Held back at creation, in the same transaction: no task run exists for the queued.
    assert states(flows, [first, second, third]) == ["PAUSED", "QUEUED", "QUEUED"]
    assert flows.engine.task_runs(second) == []

    flows.engine.control.resume(first)  # it finishes: its slot goes to the oldest queued
    assert flows.finish(first).state == "SUCCESS"
    wait_until(lambda: flows.state_of(second) == "PAUSED", what="the second to start")
    assert flows.state_of(third) == "QUEUED"

    flows.engine.control.kill(second)  # a kill frees the slot just as well
    assert flows.finish(second).state == "KILLED"
    wait_until(lambda: flows.state_of(third) == "PAUSED", what="the third to start")
    assert history(flows, third) == ["CREATED", "QUEUED", "PAUSED"]
    flows.engine.control.resume(third)
    assert flows.finish(third).state == "SUCCESS"


def test_a_limit_of_two_never_runs_three_scripts_at_once(flows: Flows) -> None:
    flow = flows.deploy(
        """
        concurrency: {limit: 2}
        tasks:
          - {id: work, type: scripts.shell.Commands, commands: ["sleep 0.3"]}
        """
    )
    ids = start(flows, flow, 5)
    done = [flows.finish(i) for i in ids]
    assert [d.state for d in done] == ["SUCCESS"] * 5
    spans = [(d.execution["start_date"], d.execution["end_date"]) for d in done]
    for start_at, _ in spans:
        at_once = sum(1 for s, e in spans if s <= start_at < e)
        assert at_once <= 2, spans
    starts = [s for s, _ in spans]
    assert starts == sorted(starts)  # creation order
    assert sum(1 for d in done if "QUEUED" in [h["state"] for h in d.execution["histories"]]) == 3


def test_cancel_ends_the_newcomer_cancelled_at_once(flows: Flows) -> None:
    flow = flows.deploy(PAUSED_FLOW.format(limit=1, behavior="CANCEL"))
    running, cancelled = start(flows, flow, 2)
    assert flows.state_of(running) == "PAUSED"
    over = flows.read(cancelled)
    assert over.state == "CANCELLED"
    assert over.runs == []
    assert [h["state"] for h in over.execution["histories"]] == ["CREATED", "CANCELLED"]
    flows.engine.control.kill(running)
    assert flows.finish(running).state == "KILLED"
    (again,) = start(flows, flow, 1)  # the slot is free again
    assert flows.state_of(again) == "PAUSED"


def test_fail_ends_the_newcomer_failed_with_the_reason(flows: Flows) -> None:
    flow = flows.deploy(PAUSED_FLOW.format(limit=1, behavior="FAIL"))
    running, failed = start(flows, flow, 2)
    over = flows.read(failed)
    assert over.state == "FAILED"
    assert over.error == (
        f"the concurrency limit of flow {flow.namespace}.{flow.id} is reached: "
        "1 of 1 executions are running"
    )
    flows.engine.control.resume(running)
    assert flows.finish(running).state == "SUCCESS"


def test_subflow_executions_are_not_held_by_the_limit(flows: Flows) -> None:
    flows.deploy(
        """
        id: child
        namespace: tests.concurrency
        concurrency: {limit: 1}
        tasks:
          - {id: hi, type: core.log.Log, message: child}
        """
    )
    done = flows.run(
        """
        tasks:
          - id: both
            type: core.flow.Parallel
            tasks:
              - {id: a, type: core.flow.Subflow, namespace: tests.concurrency, flowId: child}
              - {id: b, type: core.flow.Subflow, namespace: tests.concurrency, flowId: child}
        """
    )
    assert done.state == "SUCCESS", done.summary()


def test_two_executors_on_one_database_respect_the_limit(flows: Flows, engine: Engine) -> None:
    flow = flows.deploy(PAUSED_FLOW.format(limit=2, behavior="QUEUE"))
    second = Executor(engine.store, engine.flows, engine.renderer)
    executors = [engine.executor, second]
    created: list[str] = []
    lock = threading.Lock()

    def create(executor: Executor) -> None:
        for _ in range(5):
            row = executor.create_execution(ExecutionRequest(flow.namespace, flow.id))
            with lock:
                created.append(row["id"])

    threads = [threading.Thread(target=create, args=(e,)) for e in executors * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    found = states(flows, created)
    assert len(found) == 20
    assert sorted(found).count("PAUSED") == 2
    assert sorted(found).count("QUEUED") == 18


def test_killing_a_queued_execution_ends_it_without_running_anything(flows: Flows) -> None:
    flow = flows.deploy(PAUSED_FLOW.format(limit=1, behavior="QUEUE"))
    running, queued, last = start(flows, flow, 3)
    flows.engine.control.kill(queued)
    over = flows.read(queued)
    assert over.state == "KILLED"
    assert over.runs == []
    assert [h["state"] for h in over.execution["histories"]] == ["CREATED", "QUEUED", "KILLED"]
    assert states(flows, [running, last]) == ["PAUSED", "QUEUED"]
