"""`GET /metrics`: Prometheus metrics in the text exposition format, read from the store.

Every value comes from the store at scrape time, through indexed queries, so any
replica answers for the whole deployment and a restart loses nothing but the task-run
histogram's start:

- executions by state and the queue depth (claimable task runs) are gauges counted
  through indexes;
- syncs by result and the sync-duration histogram are counted over the sync table,
  which holds one row per deploy or failure (a poll that finds nothing writes none);
- the task-run duration histogram is maintained incrementally: each scrape adds the
  task runs that ended since the previous scrape (an index on `end_date`), so a scrape
  costs what happened since the last one. It counts from the process's start, like any
  Prometheus counter; `rate()` and `histogram_quantile()` handle the reset. Task runs
  are counted once their end is `SETTLE_SECONDS` old, so a finish committed a little
  after its end time is not missed.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from flask import Blueprint, Response, current_app

from headwater.daemon.engine.states import State
from headwater.daemon.store import queries
from headwater.daemon.store.queries import Histogram
from headwater.daemon.store.store import Row
from headwater.web.seam import now, services

blueprint = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
EXTENSION = "headwater.metrics"
SETTLE_SECONDS = 10.0  # a task run is counted once it ended this long ago
TASK_RUN_BOUNDS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
SYNC_BOUNDS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SYNC_RESULTS = ("Succeeded", "Failed")  # always shown, so the series exist before a failure


@dataclass
class TaskRunHistogram:
    """Task-run durations added up scrape after scrape, from the time the app started."""

    counted_until: float
    histogram: Histogram = field(
        default_factory=lambda: Histogram(TASK_RUN_BOUNDS, [0] * len(TASK_RUN_BOUNDS))
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def catch_up(self, moment: float) -> Histogram:
        """Add the task runs that ended since the last scrape; return the running totals."""
        until = moment - SETTLE_SECONDS
        with self.lock:
            if until > self.counted_until:
                with services().store.read() as tx:
                    new = queries.task_run_durations(tx, self.counted_until, until, TASK_RUN_BOUNDS)
                self.histogram.add(new)
                self.counted_until = until
            return Histogram(
                TASK_RUN_BOUNDS,
                list(self.histogram.buckets),
                self.histogram.count,
                self.histogram.total,
            )


def _task_runs() -> TaskRunHistogram:
    """The app's histogram, made on the first scrape: it counts task runs from then on."""
    state = current_app.extensions.get(EXTENSION)
    if state is None:
        state = current_app.extensions.setdefault(
            EXTENSION, TaskRunHistogram(counted_until=now() - SETTLE_SECONDS)
        )
    assert isinstance(state, TaskRunHistogram)
    return state


# -- the text format -----------------------------------------------------------------------
def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def family(name: str, kind: str, text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *samples]


def labelled(name: str, label: str, values: Mapping[str, float]) -> list[str]:
    return [f'{name}{{{label}="{_label(key)}"}} {_number(v)}' for key, v in values.items()]


def histogram(name: str, text: str, data: Histogram) -> list[str]:
    samples = [
        f'{name}_bucket{{le="{float(bound)!r}"}} {count}'
        for bound, count in zip(data.bounds, data.buckets, strict=True)
    ]
    samples += [
        f'{name}_bucket{{le="+Inf"}} {data.count}',
        f"{name}_sum {_number(data.total)}",
        f"{name}_count {data.count}",
    ]
    return family(name, "histogram", text, samples)


# -- the scrape ----------------------------------------------------------------------------
def exposition() -> str:
    moment = now()
    with services().store.read() as tx:
        by_state = queries.executions_by_state(tx)
        depth = queries.claimable_task_runs(tx, moment)
        by_result = queries.syncs_by_result(tx)
        last = queries.last_finished_sync(tx)
        sync_times = queries.sync_durations(tx, SYNC_BOUNDS)
    task_runs = _task_runs().catch_up(moment)
    states = {state: by_state.get(state, 0) for state in State.__members__} | by_state
    results = dict.fromkeys(SYNC_RESULTS, 0) | by_result
    lines = [
        *family(
            "headwater_executions",
            "gauge",
            "Executions by current state.",
            labelled("headwater_executions", "state", states),
        ),
        *family(
            "headwater_queue_depth",
            "gauge",
            "Task runs waiting for a worker that a worker could claim now.",
            [f"headwater_queue_depth {depth}"],
        ),
        *histogram(
            "headwater_task_run_duration_seconds",
            "How long runnable task runs took, from claim to end (since this process started).",
            task_runs,
        ),
        *family(
            "headwater_syncs_total",
            "counter",
            "Sync attempts by result.",
            labelled("headwater_syncs_total", "result", results),
        ),
        *histogram("headwater_sync_duration_seconds", "How long sync attempts took.", sync_times),
    ]
    if last is not None:
        lines += family(
            "headwater_last_sync_duration_seconds",
            "gauge",
            "How long the last finished sync attempt took.",
            [f"headwater_last_sync_duration_seconds {_number(_took(last))}"],
        )
        lines += family(
            "headwater_last_sync_timestamp_seconds",
            "gauge",
            "When the last sync attempt finished (seconds since the epoch).",
            [f"headwater_last_sync_timestamp_seconds {_number(last['finished_at'])}"],
        )
    return "\n".join(lines) + "\n"


def _took(row: Row) -> float:
    return max(0.0, float(row["finished_at"]) - float(row["started_at"]))


@blueprint.get("/metrics")
def metrics() -> Response:
    return Response(exposition(), content_type=CONTENT_TYPE)
