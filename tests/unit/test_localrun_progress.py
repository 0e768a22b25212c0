"""How `headwater run` places task-run state changes among the log lines of one poll."""

from __future__ import annotations

from typing import Any

from headwater.daemon.localrun import Change, interleave


def run(run_id: str, start: float, end: float | None = None) -> dict[str, Any]:
    return {"id": run_id, "created_at": start, "start_date": start, "end_date": end}


def line(line_id: int, run_id: str, at: float) -> dict[str, Any]:
    return {"id": line_id, "task_run_id": run_id, "timestamp": at, "message": f"line {line_id}"}


def shown(items: list[Any]) -> list[str]:
    return [f"{i.state} {i.label}" if isinstance(i, Change) else i["message"] for i in items]


def test_changes_fall_between_the_lines_by_time() -> None:
    a, b = run("a", 1.0, 2.0), run("b", 2.1, 3.0)
    changes = [Change(a, "SUCCESS", "a"), Change(b, "RUNNING", "b"), Change(b, "SUCCESS", "b")]
    lines = [line(1, "a", 1.5), line(2, "b", 2.5)]
    assert shown(interleave(changes, lines)) == [
        "line 1",
        "SUCCESS a",
        "RUNNING b",
        "line 2",
        "SUCCESS b",
    ]


def test_a_run_ends_after_its_last_line_and_starts_before_its_first_whatever_the_clock() -> None:
    a = run("a", 5.0, 1.0)  # dates that disagree with the lines' timestamps
    changes = [Change(a, "RUNNING", "a"), Change(a, "FAILED", "a")]
    lines = [line(1, "a", 2.0), line(2, "a", 3.0)]
    assert shown(interleave(changes, lines)) == ["RUNNING a", "line 1", "line 2", "FAILED a"]


def test_lines_keep_the_store_order_and_none_is_lost_or_doubled() -> None:
    a, b = run("a", 1.0), run("b", 1.0)
    lines = [line(1, "a", 1.2), line(2, "b", 1.1), line(3, "a", 1.3)]
    merged = interleave([Change(a, "RUNNING", "a"), Change(b, "RUNNING", "b")], lines)
    assert [i["id"] for i in merged if not isinstance(i, Change)] == [1, 2, 3]
    assert shown(merged)[:2] == ["RUNNING a", "RUNNING b"]
