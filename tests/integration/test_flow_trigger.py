"""core.trigger.Flow on a real engine: upstream executions end, downstream flows start.

Flows are deployed into a real engine (SQLite, worker threads); what a user notices is
checked: which executions exist, their `trigger`, what their tasks printed, and the log
line on the upstream execution when a trigger does not fire.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import EngineFactory, Flows
from gitrepos import WorkingClone, make_remote
from sqlalchemy import select
from waiting import wait_until

from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.flow.repository import scan
from headwater.daemon.git import Mirror
from headwater.daemon.store.store import EXECUTIONS, Row
from headwater.daemon.sync import Syncer
from headwater.daemon.triggers.flowtrigger import MAX_CHAIN

UPSTREAM = """
id: extract
namespace: company.data
tasks:
  - id: produce
    type: core.output.OutputValues
    values:
      rows: 42
  - id: maybe_fail
    type: core.execution.Fail
    runIf: "{{ inputs.fail ?? false }}"
inputs:
  - id: fail
    type: BOOLEAN
    defaults: false
outputs:
  - {id: rows, type: INT, value: "{{ outputs.produce.values.rows }}"}
"""


def downstream(flow_id: str, trigger: str, namespace: str = "company.reports") -> str:
    return f"""
id: {flow_id}
namespace: {namespace}
inputs:
  - id: rows
    type: INT
    defaults: 0
tasks:
  - id: report
    type: core.log.Log
    message: "rows={{{{ inputs.rows }}}} from {{{{ trigger.flowId }}}} {{{{ trigger.state }}}}"
triggers:
{trigger}
"""


ON_EXTRACT = """
  - id: after_extract
    type: core.trigger.Flow
    inputs:
      rows: "{{ trigger.outputs.rows }}"
    conditions:
      - type: core.condition.ExecutionFlow
        namespace: company.data
        flowId: extract
"""


def executions_of(engine: Engine, flow_id: str) -> list[Row]:
    with engine.store.read() as tx:
        rows = tx.connection.execute(
            select(EXECUTIONS).where(EXECUTIONS.c.flow_id == flow_id).order_by(EXECUTIONS.c.id)
        ).mappings()
        return [dict(r) for r in rows]


def start(engine: Engine, flow_id: str, inputs: dict[str, Any] | None = None) -> str:
    request = ExecutionRequest("company.data", flow_id, inputs=inputs or {})
    return str(engine.start_execution(request)["id"])


def one_execution_of(flows: Flows, flow_id: str) -> Row:
    found = wait_until(lambda: executions_of(flows.engine, flow_id), what=f"{flow_id} to start")
    assert len(found) == 1, found
    return flows.finish(found[0]["id"]).execution


@pytest.mark.postgres
def test_an_upstream_success_starts_the_downstream_with_its_outputs(flows: Flows) -> None:
    flows.deploy(UPSTREAM)
    flows.deploy(downstream("report", ON_EXTRACT))
    upstream = flows.finish(start(flows.engine, "extract"))
    assert upstream.state == "SUCCESS"
    started = one_execution_of(flows, "report")
    assert started["state"] == "SUCCESS"
    assert started["inputs"] == {"rows": 42}
    trigger = started["trigger"]
    assert trigger["type"] == "core.trigger.Flow"
    assert trigger["id"] == "after_extract"
    assert trigger["executionId"] == upstream.execution["id"]
    assert (trigger["namespace"], trigger["flowId"], trigger["state"]) == (
        "company.data",
        "extract",
        "SUCCESS",
    )
    assert trigger["outputs"] == {"rows": 42}
    assert started["trigger_key"] == (
        f"flow:{upstream.execution['id']}:company.reports/report/after_extract"
    )
    assert flows.read(started["id"]).messages("report") == ["rows=42 from extract SUCCESS"]


def test_states_conditions_and_namespaces_filter_what_fires(flows: Flows) -> None:
    flows.deploy(UPSTREAM)
    flows.deploy(UPSTREAM.replace("id: extract", "id: other"))
    on_failure = """
  - id: on_failure
    type: core.trigger.Flow
    states: [FAILED]
    preconditions:
      flows:
        - namespace: company.data
          flowId: extract
"""
    flows.deploy(downstream("alert", on_failure))
    by_prefix = """
  - id: anything_in_company
    type: core.trigger.Flow
    conditions:
      - type: core.condition.ExecutionNamespace
        namespace: company.
        comparison: PREFIX
      - type: core.condition.Expression
        expression: "{{ trigger.outputs.rows ?? 0 > 40 }}"
"""
    flows.deploy(downstream("audit", by_prefix, namespace="ops"))

    first = flows.finish(start(flows.engine, "extract"))
    assert first.state == "SUCCESS"
    flows.finish(start(flows.engine, "other"))
    failed = flows.finish(start(flows.engine, "extract", {"fail": True}))
    assert failed.state == "FAILED"

    def audits() -> list[Row]:
        return [r for r in executions_of(flows.engine, "audit") if r["state"] == "SUCCESS"]

    # The audit fires for the two successes (outputs rows=42), not for the failure
    # (no outputs: the expression is false); the alert only for the failure.
    done = wait_until(lambda: len(audits()) == 2 and audits(), what="two audits")
    assert sorted(r["trigger"]["flowId"] for r in done) == ["extract", "other"]
    alert = one_execution_of(flows, "alert")
    assert alert["trigger"]["executionId"] == failed.execution["id"]
    assert alert["trigger"]["state"] == "FAILED"
    assert len(executions_of(flows.engine, "audit")) == 2


@pytest.mark.postgres
def test_a_trigger_fires_once_per_upstream_execution_even_when_asked_again(
    make_engine: EngineFactory, tmp_path: Any
) -> None:
    engine = make_engine()
    flows = Flows(engine)
    flows.deploy(UPSTREAM)
    flows.deploy(downstream("report", ON_EXTRACT))
    upstream = flows.finish(start(engine, "extract"))
    one_execution_of(flows, "report")
    # The end is seen again (a second executor, a replay of the hook after a crash):
    # the trigger key makes it the same execution.
    with engine.store.write() as tx:
        again = engine.flow_triggers.on_end(tx, dict(upstream.execution))
    assert again == []
    assert len(executions_of(engine, "report")) == 1


@pytest.mark.postgres
def test_a_restarted_engine_does_not_fire_again(make_engine: EngineFactory, tmp_path: Any) -> None:
    engine = make_engine()
    flows = Flows(engine)
    flows.deploy(UPSTREAM)
    flows.deploy(downstream("report", ON_EXTRACT))
    flows.finish(start(engine, "extract"))
    one_execution_of(flows, "report")
    engine.stop(grace=5)
    restarted = make_engine()
    restarted.executor.tick()
    assert len(executions_of(restarted, "report")) == 1


def test_a_loop_of_flow_triggers_stops_at_the_chain_limit(flows: Flows) -> None:
    # Deployed straight into the engine: a sync would refuse this loop (test_sync_loops).
    ping = """
id: ping
namespace: company.data
tasks:
  - {id: say, type: core.log.Log, message: "ping {{ trigger.chain ?? [] | length }}"}
triggers:
  - id: after_pong
    type: core.trigger.Flow
    conditions:
      - {type: core.condition.ExecutionFlow, namespace: company.data, flowId: pong}
"""
    flows.deploy(ping)
    flows.deploy(ping.replace("ping", "pong").replace("flowId: pong", "flowId: ping"))
    first = start(flows.engine, "ping")

    def all_ended() -> list[Row]:
        rows = executions_of(flows.engine, "ping") + executions_of(flows.engine, "pong")
        ended = [r for r in rows if r["state"] == "SUCCESS"]
        return ended if len(ended) == MAX_CHAIN + 1 else []

    ended = wait_until(all_ended, timeout=20, what="the chain to end")
    last = max(ended, key=lambda r: len((r["trigger"] or {}).get("chain") or []))
    assert len(last["trigger"]["chain"]) == MAX_CHAIN
    flows.engine.logs.flush()
    errors = [r["message"] for r in flows.engine.store.logs(last["id"]) if r["level"] == "ERROR"]
    assert len(errors) == 1, errors
    assert "flow trigger after_" in errors[0]
    assert f"would make {MAX_CHAIN + 1} executions started by flow triggers in a row" in errors[0]
    assert errors[0].count(" -> ") == MAX_CHAIN + 1
    assert "company.data.ping -> company.data.pong -> company.data.ping" in errors[0]
    assert flows.state_of(first) == "SUCCESS"


@pytest.mark.postgres
def test_refused_inputs_are_told_on_the_upstream_execution(flows: Flows) -> None:
    flows.deploy(UPSTREAM)
    bad = ON_EXTRACT.replace('rows: "{{ trigger.outputs.rows }}"', "rows: many")
    flows.deploy(downstream("report", bad))
    upstream = flows.finish(start(flows.engine, "extract"))
    assert upstream.state == "SUCCESS"
    flows.engine.logs.flush()
    errors = [r["message"] for r in flows.engine.store.logs(upstream.execution["id"])]
    assert any(
        "flow trigger after_extract of company.reports.report could not start it" in m
        and "input 'rows'" in m
        for m in errors
    ), errors
    assert executions_of(flows.engine, "report") == []


# -- loops caught at validation ----------------------------------------------------------


def listener(flow_id: str, upstream: str, extra: str = "", namespace: str = "loop") -> str:
    return f"""\
id: {flow_id}
namespace: {namespace}
tasks:
  - {{id: say, type: core.log.Log, message: hi}}
triggers:
  - id: after_{upstream}
    type: core.trigger.Flow
{extra}    conditions:
      - type: core.condition.ExecutionFlow
        namespace: loop
        flowId: {upstream}
"""


def test_validate_names_the_loop_and_where_it_closes(tmp_path: Path) -> None:
    folder = tmp_path / "flows" / "loop"
    folder.mkdir(parents=True)
    (folder / "a.yaml").write_text(listener("a", "c"))
    (folder / "b.yaml").write_text(listener("b", "a"))
    (folder / "c.yaml").write_text(listener("c", "b"))
    (folder / "self.yaml").write_text(listener("self", "self"))
    guarded = (
        '    conditions:\n      - {type: core.condition.Expression, expression: "{{ false }}"}\n'
    )
    (folder / "d.yaml").write_text(listener("d", "e").replace("    conditions:\n", guarded, 1))
    (folder / "e.yaml").write_text(listener("e", "d"))
    (folder / "f.yaml").write_text(listener("f", "g", extra="    disabled: true\n"))
    (folder / "g.yaml").write_text(listener("g", "f"))
    messages = sorted(str(d) for d in scan(tmp_path).all_diagnostics)
    assert messages == [
        "flows/loop/a.yaml:9:9: error: triggers[0].conditions[0]: flow triggers make a loop: "
        "loop.a -> loop.b -> loop.c -> loop.a; the end of each starts the next, forever (at "
        "run time the chain stops after 10). Remove one of these triggers, or give it an "
        "Expression condition that ends the loop",
        "flows/loop/b.yaml:9:9: error: triggers[0].conditions[0]: flow triggers make a loop: "
        "loop.b -> loop.c -> loop.a -> loop.b; the end of each starts the next, forever (at "
        "run time the chain stops after 10). Remove one of these triggers, or give it an "
        "Expression condition that ends the loop",
        "flows/loop/c.yaml:9:9: error: triggers[0].conditions[0]: flow triggers make a loop: "
        "loop.c -> loop.a -> loop.b -> loop.c; the end of each starts the next, forever (at "
        "run time the chain stops after 10). Remove one of these triggers, or give it an "
        "Expression condition that ends the loop",
        "flows/loop/self.yaml:9:9: error: triggers[0].conditions[0]: a flow trigger cannot "
        "name its own flow loop.self (a flow never triggers itself); remove this condition",
    ]


def test_a_sync_refuses_a_commit_that_closes_a_loop(tmp_path: Path) -> None:
    remote = make_remote(tmp_path / "remote.git")
    clone = WorkingClone.create(tmp_path / "work", remote)
    engine = Engine(EngineSettings(data_dir=tmp_path / "data", workers=1))
    mirror = Mirror(tmp_path / "data" / "mirror.git", str(remote), "main")
    mirror.ensure()
    syncer = Syncer(engine.store, mirror)
    try:
        plain_c = listener("c", "b").split("triggers:")[0]
        clone.write_many(
            {
                "flows/loop/a.yaml": listener("a", "c"),
                "flows/loop/b.yaml": listener("b", "a"),
                "flows/loop/c.yaml": plain_c,
            }
        )
        clone.commit("a, b and c")
        clone.push()
        assert syncer.sync("poll").result == "Succeeded"
        # c listens to b: the chain a -> b -> c -> a is closed by c's change alone.
        clone.write("flows/loop/c.yaml", listener("c", "b"))
        clone.commit("c")
        clone.push()
        outcome = syncer.sync("poll")
        assert outcome.result == "Failed"
        assert [str(e) for e in outcome.errors] == [
            "flows/loop/c.yaml:9:9: error: triggers[0].conditions[0]: flow triggers make a "
            "loop: loop.c -> loop.a -> loop.b -> loop.c; the end of each starts the next, "
            "forever (at run time the chain stops after 10). Remove one of these triggers, or "
            "give it an Expression condition that ends the loop"
        ]
        # Guarded by an expression, the same flow deploys.
        guarded = listener("c", "b").replace(
            "    conditions:\n",
            "    conditions:\n      - {type: core.condition.Expression, expression: yes}\n",
            1,
        )
        clone.write("flows/loop/c.yaml", guarded)
        clone.commit("c, guarded")
        clone.push()
        assert syncer.sync("poll").result == "Succeeded"
        # Changing b to a loop edge later is caught too, from b's side: a -> b is
        # unconditional, c -> a is unconditional, b -> c is guarded: no loop yet.
        clone.write("flows/loop/b.yaml", listener("b", "a", extra="    states: [SUCCESS]\n"))
        clone.commit("b on success")
        clone.push()
        assert syncer.sync("poll").result == "Succeeded"
    finally:
        mirror.close()
        engine.stop(grace=1)
