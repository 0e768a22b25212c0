"""Typed inputs through `start_execution`: every type accepted and refused, defaults, and
FILE inputs kept in internal storage and read by a script task. A refused input creates
no execution at all."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Flows
from enginefixtures import EngineFactory
from sqlalchemy import func, select

from headwater.daemon.engine.engine import Engine
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.engine.inputs import InputsRefused, UploadedFile
from headwater.daemon.store.store import EXECUTIONS, TASK_RUNS

ALL_TYPES = """
    id: typed
    namespace: tests.inputs
    inputs:
      - {id: text, type: STRING, validator: "^[a-z]+$"}
      - {id: password, type: SECRET}
      - {id: count, type: INT, min: 1, max: 10}
      - {id: ratio, type: FLOAT, max: 1.0}
      - {id: flag, type: BOOLEAN}
      - {id: moment, type: DATETIME, after: "2024-01-01T00:00:00Z"}
      - {id: day, type: DATE, before: "2030-01-01"}
      - {id: clock, type: TIME}
      - {id: wait, type: DURATION, max: PT1H}
      - {id: color, type: SELECT, values: [red, green]}
      - {id: legacy_color, type: ENUM, values: [red, green]}
      - {id: colors, type: MULTISELECT, values: [red, green, blue]}
      - {id: numbers, type: ARRAY, itemType: INT}
      - {id: config, type: JSON}
      - {id: spec, type: YAML}
      - {id: site, type: URI}
      - {id: contact, type: EMAIL}
    tasks:
      - id: show
        type: core.log.Log
        message: >-
          {{ inputs.text | upper }} {{ inputs.count + 1 }} {{ inputs.ratio * 2 }}
          {{ inputs.flag ? 'on' : 'off' }} {{ inputs.colors | join('+') }}
          {{ inputs.numbers | length }} {{ inputs.config.k }} {{ inputs.spec.a }}
    """

GOOD: dict[str, Any] = {
    "text": "abc",
    "password": "hunter2-long",
    "count": "3",
    "ratio": 0.25,
    "flag": "TRUE",
    "moment": "2024-05-01T10:00:00+02:00",
    "day": "2024-05-01",
    "clock": "18:00",
    "wait": "PT30M",
    "color": "red",
    "legacy_color": "green",
    "colors": ["red", "blue"],
    "numbers": "[1, 2, 3]",
    "config": '{"k": "v"}',
    "spec": "a: 1\nb: [x, y]\n",
    "site": "https://example.com/path",
    "contact": "ops@example.com",
}

BAD: list[tuple[str, Any, str]] = [
    ("text", "ABC", "does not match the validator ^[a-z]+$"),
    ("count", "11", "must be at most 10, got 11"),
    ("count", "1.5", "must be an integer"),
    ("ratio", "lots", "must be a number"),
    ("flag", "maybe", "must be true or false"),
    ("moment", "2024-05-01T10:00:00", "time zone"),
    ("moment", "2023-05-01T10:00:00Z", "must be after"),
    ("day", "01/05/2024", "must be a date like 2024-01-31"),
    ("clock", "25:99", "must be a time like 18:00"),
    ("wait", "PT2H", "must be at most PT1H"),
    ("color", "blue", "must be one of"),
    ("colors", ["red", "pink"], "'pink' is not among the values: red, green, blue"),
    ("numbers", "[1, 'x']", "not valid JSON"),
    ("config", "{broken", "is not valid JSON"),
    ("spec", "a: [1", "is not valid YAML"),
    ("site", "not a uri", "must be a URI"),
    ("contact", "nobody", "must be an email address"),
]


def count(engine: Engine, table: Any) -> int:
    with engine.store.read() as tx:
        return int(tx.connection.execute(select(func.count()).select_from(table)).scalar_one())


def start(engine: Engine, inputs: dict[str, Any], flow_id: str = "typed") -> str:
    request = ExecutionRequest("tests.inputs", flow_id, inputs=inputs)
    return str(engine.start_execution(request)["id"])


def test_every_input_type_accepts_a_good_value(flows: Flows) -> None:
    flows.deploy(ALL_TYPES)
    done = flows.finish(start(flows.engine, GOOD))
    assert done.state == "SUCCESS", done.summary()
    stored = dict(done.execution["inputs"])
    assert stored["password"] != "hunter2-long"  # a SECRET value is kept encrypted
    stored["password"] = flows.engine.sealer.open(stored["password"])
    assert stored == {
        "text": "abc",
        "password": "hunter2-long",
        "count": 3,
        "ratio": 0.25,
        "flag": True,
        "moment": "2024-05-01T08:00:00Z",
        "day": "2024-05-01",
        "clock": "18:00:00",
        "wait": "PT30M",
        "color": "red",
        "legacy_color": "green",
        "colors": ["red", "blue"],
        "numbers": [1, 2, 3],
        "config": {"k": "v"},
        "spec": {"a": 1, "b": ["x", "y"]},
        "site": "https://example.com/path",
        "contact": "ops@example.com",
    }
    assert done.messages("show") == ["ABC 4 0.5 on red+blue 3 v 1"]


@pytest.mark.parametrize(("input_id", "value", "reason"), BAD, ids=[f"{i}={v}" for i, v, _ in BAD])
def test_a_bad_value_is_refused_and_nothing_is_created(
    flows: Flows, input_id: str, value: Any, reason: str
) -> None:
    flows.deploy(ALL_TYPES)
    before = count(flows.engine, EXECUTIONS), count(flows.engine, TASK_RUNS)
    with pytest.raises(InputsRefused) as refused:
        start(flows.engine, {**GOOD, input_id: value})
    assert [p.input_id for p in refused.value.problems] == [input_id]
    assert reason in refused.value.problems[0].reason
    assert str(refused.value).startswith(f"input '{input_id}': ")
    assert (count(flows.engine, EXECUTIONS), count(flows.engine, TASK_RUNS)) == before


def test_every_problem_is_reported_at_once_and_a_secret_is_never_shown(flows: Flows) -> None:
    flows.deploy(ALL_TYPES)
    given = {k: v for k, v in GOOD.items() if k not in ("text", "count")}
    with pytest.raises(InputsRefused) as refused:
        start(flows.engine, {**given, "password": ["hunter2-secret"], "site": "nope"})
    assert {p.input_id: p.reason for p in refused.value.problems} == {
        "text": "is required",
        "password": "must be text",
        "count": "is required",
        "site": "must be a URI like https://example.com/path, got 'nope'",
    }
    assert "hunter2" not in str(refused.value)
    assert count(flows.engine, EXECUTIONS) == 0


def test_an_unknown_input_is_refused(flows: Flows) -> None:
    flows.deploy(ALL_TYPES)
    with pytest.raises(InputsRefused) as refused:
        start(flows.engine, {**GOOD, "colour": "red"})
    assert [p.input_id for p in refused.value.problems] == ["colour"]
    assert count(flows.engine, EXECUTIONS) == 0


def test_defaults_fill_what_is_not_given(flows: Flows) -> None:
    done = flows.run(
        """
        inputs:
          - {id: region, type: STRING, defaults: eu-west}
          - {id: retries, type: INT, defaults: 3}
          - {id: tags, type: ARRAY, itemType: STRING, defaults: [a, b]}
          - {id: since, type: DATE, defaults: "2024-01-31"}
          - {id: note, type: STRING, required: false}
          - {id: label, type: STRING, defaults: "{{ inputs.region | upper }}"}
        tasks:
          - id: show
            type: core.log.Log
            message: "{{ inputs.region }} {{ inputs.retries * 2 }} {{ inputs.tags | join(',') }}
              {{ inputs.since }} {{ inputs.note ?? 'no note' }} {{ inputs.label }}"
        """,
        {"retries": ""},  # an untouched form field counts as not given
    )
    assert done.state == "SUCCESS", done.summary()
    assert done.messages("show") == ["eu-west 6 a,b 2024-01-31 no note EU-WEST"]
    assert done.execution["inputs"]["note"] is None


def test_a_file_input_is_stored_and_readable_by_a_script(flows: Flows) -> None:
    data = b"id,name\n1,ada\n2,grace\n"
    done = flows.run(
        """
        inputs:
          - {id: upload, type: FILE, extension: .csv}
        tasks:
          - id: count
            type: scripts.shell.Commands
            inputFiles:
              data.csv: "{{ inputs.upload }}"
            commands:
              - echo "$(wc -l < data.csv) lines"
              - tail -n 1 data.csv
          - id: where
            type: core.log.Log
            message: "{{ inputs.upload }}"
        """,
        {"upload": UploadedFile("people.csv", data)},
    )
    assert done.state == "SUCCESS", done.summary()
    uri = done.execution["inputs"]["upload"]
    assert uri.startswith("kestra:///tests/")
    assert uri.endswith(f"/executions/{done.execution['id']}/inputs/upload/people.csv")
    assert flows.engine.storage.get(uri) == data
    assert done.messages("count") == ["3 lines", "2,grace"]
    assert done.messages("where") == [uri]


PRICE_LIST = """\
id: price_list
namespace: tests.inputs
inputs:
  - id: prices
    type: FILE
    extension: .csv
    defaults: nsfile:///samples/prices.csv
tasks:
  - id: last
    type: scripts.shell.Commands
    inputFiles:
      prices.csv: "{{ inputs.prices }}"
    commands:
      - tail -n 1 prices.csv
"""


def test_a_file_default_is_the_namespace_file_at_the_commit_of_the_flows_revision(
    make_engine: EngineFactory,
) -> None:
    files = {
        "c1": {"samples/prices.csv": b"sku,price\nA1,3.50\n"},
        "c2": {"samples/prices.csv": b"sku,price\nA1,4.00\n"},
        "c3": {"samples/other.csv": b"sku,price\n"},
    }
    asked: list[tuple[str, str | None]] = []

    def namespace_files(namespace: str, commit: str | None) -> dict[str, bytes]:
        asked.append((namespace, commit))
        return files.get(commit or "", {})

    engine = make_engine(namespace_files=namespace_files)
    flows = Flows(engine)
    path = "tests/inputs/price_list.yaml"
    engine.deploy_source(PRICE_LIST, path, {"commit_sha": "c1"})
    first = flows.finish(start(engine, {}, "price_list"))
    assert first.state == "SUCCESS", first.summary()
    uri = first.execution["inputs"]["prices"]
    assert uri.endswith(f"/executions/{first.execution['id']}/inputs/prices/prices.csv")
    assert first.messages("last") == ["A1,3.50"]
    assert ("tests.inputs", "c1") in asked

    engine.deploy_source(PRICE_LIST + "# v2\n", path, {"commit_sha": "c2"})
    second = flows.finish(start(engine, {}, "price_list"))
    assert second.messages("last") == ["A1,4.00"]
    assert engine.storage.get(uri) == files["c1"]["samples/prices.csv"]  # a copy: kept as it was

    given = flows.finish(
        start(engine, {"prices": UploadedFile("mine.csv", b"B2,1.00\n")}, "price_list")
    )
    assert given.messages("last") == ["B2,1.00"]

    engine.deploy_source(PRICE_LIST + "# v3\n", path, {"commit_sha": "c3"})
    with pytest.raises(InputsRefused) as refused:
        start(engine, {}, "price_list")
    assert str(refused.value) == (
        "input 'prices': its default value is invalid: namespace file samples/prices.csv does "
        "not exist in the flow's namespace (its _files/ folder)"
    )
    assert count(engine, EXECUTIONS) == 3


def test_a_file_input_with_the_wrong_extension_is_refused_and_not_stored(
    flows: Flows,
) -> None:
    flows.deploy(
        """
        id: upload
        namespace: tests.inputs
        inputs:
          - {id: upload, type: FILE, extension: .csv}
        tasks:
          - {id: t, type: core.log.Log, message: x}
        """
    )
    storage = flows.engine.settings.data_dir / "storage"
    with pytest.raises(InputsRefused) as refused:
        start(flows.engine, {"upload": UploadedFile("notes.txt", b"hello")}, "upload")
    assert str(refused.value) == "input 'upload': must be a .csv file, got 'notes.txt'"
    assert not any(p.is_file() for p in storage.rglob("*"))
    assert count(flows.engine, EXECUTIONS) == 0
