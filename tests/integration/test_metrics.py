"""`GET /metrics` on a real engine and store, parsed with Prometheus's own text parser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from conftest import EngineFactory, Flows
from engineservices import EngineServices
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from test_api import REPOSITORY, record_sync

from headwater.daemon.engine.engine import Engine
from headwater.daemon.services import WebSettings
from headwater.web.app import create_app
from headwater.web.metrics import SETTLE_SECONDS

THREE_TASKS = """
tasks:
  - id: a
    type: io.kestra.plugin.core.log.Log
    message: one
  - id: b
    type: io.kestra.plugin.core.log.Log
    message: two
  - id: c
    type: io.kestra.plugin.core.flow.Sequential
    tasks:
      - id: d
        type: io.kestra.plugin.core.log.Log
        message: three
"""
FAILING = """
tasks:
  - id: boom
    type: io.kestra.plugin.core.execution.Fail
"""


@dataclass
class Clock:
    """The app's clock, moved by the test (the engine keeps real time)."""

    offset: float = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine(workers=2)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(engine: Engine, clock: Clock) -> FlaskClient:
    services = EngineServices(engine, WebSettings(REPOSITORY, "main"))
    return create_app(services, clock=clock).test_client()


def scrape(client: FlaskClient) -> dict[str, Any]:
    """{sample name with sorted labels: value}, from the text format as Prometheus reads it."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain; version=0.0.4")
    samples: dict[str, Any] = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_executions_by_state_and_syncs(client: FlaskClient, engine: Engine) -> None:
    flows = Flows(engine)
    for _ in range(2):
        flows.run(THREE_TASKS)
    flows.run(FAILING)
    record_sync(engine.store, "Succeeded", started_at=100.0, finished_at=100.4)
    record_sync(engine.store, "Failed", started_at=200.0, finished_at=203.0)
    record_sync(engine.store, "Succeeded", started_at=300.0, finished_at=300.2)
    found = scrape(client)
    assert found["headwater_executions{state=SUCCESS}"] == 2
    assert found["headwater_executions{state=FAILED}"] == 1
    assert found["headwater_executions{state=RUNNING}"] == 0  # every state is always shown
    assert found["headwater_syncs_total{result=Succeeded}"] == 2
    assert found["headwater_syncs_total{result=Failed}"] == 1
    assert found["headwater_sync_duration_seconds_bucket{le=0.25}"] == 1
    assert found["headwater_sync_duration_seconds_bucket{le=0.5}"] == 2
    assert found["headwater_sync_duration_seconds_bucket{le=5.0}"] == 3
    assert found["headwater_sync_duration_seconds_count"] == 3
    assert found["headwater_sync_duration_seconds_sum"] == pytest.approx(3.6)
    assert found["headwater_last_sync_duration_seconds"] == pytest.approx(0.2)
    assert found["headwater_last_sync_timestamp_seconds"] == pytest.approx(300.2)


def test_before_any_sync_the_counters_start_at_zero(client: FlaskClient) -> None:
    found = scrape(client)
    assert found["headwater_syncs_total{result=Failed}"] == 0
    assert found["headwater_sync_duration_seconds_count"] == 0
    assert "headwater_last_sync_duration_seconds" not in found
    assert found["headwater_queue_depth"] == 0


def test_task_run_durations_are_counted_once(
    client: FlaskClient, engine: Engine, clock: Clock
) -> None:
    flows = Flows(engine)
    scrape(client)  # the histogram counts task runs that end from here on
    finished = [flows.run(THREE_TASKS) for _ in range(2)]
    runnable = [r for f in finished for r in f.runs if r["task_id"] in ("a", "b", "d")]
    assert scrape(client)["headwater_task_run_duration_seconds_count"] == 0  # not settled yet
    clock.offset = SETTLE_SECONDS + 1
    found = scrape(client)
    assert found["headwater_task_run_duration_seconds_count"] == len(runnable) == 6
    took = sum(r["end_date"] - r["start_date"] for r in runnable)
    assert found["headwater_task_run_duration_seconds_sum"] == pytest.approx(took)
    assert found["headwater_task_run_duration_seconds_bucket{le=+Inf}"] == 6
    assert found["headwater_task_run_duration_seconds_bucket{le=3600.0}"] == 6
    clock.offset += 60
    again = scrape(client)
    assert again["headwater_task_run_duration_seconds_count"] == 6  # no task run twice


def test_queue_depth_counts_claimable_task_runs(
    client: FlaskClient, engine: Engine, clock: Clock
) -> None:
    later = engine.clock() + 3600  # the engine's workers will not claim them for an hour
    rows = [
        {
            "id": f"waiting-{n}",
            "execution_id": "x",
            "task_id": "t",
            "state": state,
            "runnable": runnable,
            "created_at": later,
            "not_before": later,
        }
        for n, (state, runnable) in enumerate(
            [("CREATED", True), ("RETRYING", True), ("CREATED", False), ("RUNNING", True)]
        )
    ]
    with engine.store.write() as tx:
        tx.insert_task_runs(rows)
    assert scrape(client)["headwater_queue_depth"] == 0  # not due yet
    clock.offset = 3601
    assert scrape(client)["headwater_queue_depth"] == 2  # created or retrying, runnable
