"""Secrets stay masked wherever a flow puts them, and never reach the store in clear.

Issue 11: a secret used as an output key was shown in clear; `upper`, `reverse` and
`split`/`join` of a secret printed it unmasked; the clear secret was stored at rest in
the task run's attempts. Each way a flow author might leak one is tried here, and then
every byte of the store (the SQLite file and its write-ahead log) is searched for the
secret in any of its common forms.
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
from pathlib import Path

from conftest import EngineFactory, Flows

from headwater.daemon.engine.secrets import MASK

SECRET = "Hunter2-Correct-Horse"
ENVIRON = {"SECRET_API_KEY": base64.b64encode(SECRET.encode()).decode()}


def forms(value: str) -> dict[str, str]:
    """The forms in which a leak would show: what the store is searched for."""
    raw = value.encode()
    return {
        "clear": value,
        "upper": value.upper(),
        "lower": value.lower(),
        "reversed": value[::-1],
        "base64": base64.b64encode(raw).decode(),
        "url": urllib.parse.quote(value, safe=""),
        "json": json.dumps(value)[1:-1],
        "split and joined": value.replace("-", " "),
    }


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def store_bytes(data_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(data_dir.glob("headwater.db*")))


def assert_not_in_store(data_dir: Path, value: str) -> None:
    stored = store_bytes(data_dir)
    leaked = [name for name, form in forms(value).items() if form.encode() in stored]
    assert not leaked, f"the store holds the secret ({', '.join(leaked)})"


LEAKY_FLOW = """
tasks:
  - id: transforms
    type: core.log.Log
    message:
      - "plain {{ secret('API_KEY') }}"
      - "upper {{ secret('API_KEY') | upper }}"
      - "lower {{ secret('API_KEY') | lower }}"
      - "reversed {{ secret('API_KEY') | reverse }}"
      - "split and joined {{ secret('API_KEY') | split('-') | join(' ') }}"
      - "base64 {{ secret('API_KEY') | base64encode }}"
      - "url {{ secret('API_KEY') | urlencode }}"
      - "json {{ secret('API_KEY') | json }}"
      - "concatenated then reversed {{ ('x' ~ secret('API_KEY')) | reverse }}"
  - id: outputs
    type: core.output.OutputValues
    values:
      upper: "{{ secret('API_KEY') | upper }}"
  - id: shell
    type: scripts.shell.Commands
    env:
      KEY: "{{ secret('API_KEY') }}"
    commands:
      - printf '%s\\n' "$KEY" | tr 'a-z' 'A-Z'
      - printf '%s\\n' "$KEY" | rev
      - printf '%s' "$KEY" | base64
      - >-
        echo "::{\\"outputs\\": {\\"$KEY\\": 1}}::"
  - id: fails
    type: core.execution.Fail
    allowFailure: true
    errorMessage: "cannot call the API with {{ secret('API_KEY') | upper }}"
"""


def test_no_form_of_a_secret_is_shown_or_stored(make_engine: EngineFactory, tmp_path: Path) -> None:
    flows = Flows(make_engine(environ=ENVIRON))
    finished = flows.run(LEAKY_FLOW)
    assert finished.state == "WARNING", finished.summary()

    transforms = finished.messages("transforms")
    assert len(transforms) == 9
    for line in transforms:
        label, _, rest = line.rpartition(" ")
        assert rest == MASK, f"{label}: {rest!r} is not masked"
    assert finished.messages("shell")[:3] == [MASK, MASK, MASK]

    outputs = finished.run("outputs")["outputs"]["values"]
    assert outputs == {"upper": MASK}
    assert finished.run("shell")["outputs"]["vars"] == {MASK: 1}
    fails = finished.run("fails")
    assert fails["error"] == f"cannot call the API with {MASK}"
    assert [a["error"] for a in fails["attempts"]] == [f"cannot call the API with {MASK}"]

    assert_not_in_store(tmp_path / "data", SECRET)


def test_secret_inputs_are_sealed_at_rest_and_work_in_tasks(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    """A SECRET input's value, and a subflow input given a secret, are stored encrypted;
    the tasks that use them see the clear value (compared by its SHA-256 here, so the flow
    source itself does not hold it)."""
    engine = make_engine(environ=ENVIRON)
    flows = Flows(engine)
    flows.deploy(
        """
        id: child
        namespace: tests
        inputs:
          - id: token
            type: STRING
        tasks:
          - id: check
            type: core.execution.Fail
            condition: "{{ inputs.token | sha256 != 'SECRET_SHA' }}"
            errorMessage: the child did not get the secret
        """.replace("SECRET_SHA", sha256(SECRET))
    )
    password = "Tr0ub4dor&3-staple"
    finished = flows.run(
        """
        inputs:
          - id: password
            type: SECRET
        tasks:
          - id: check
            type: core.execution.Fail
            condition: "{{ inputs.password | sha256 != 'PASSWORD_SHA' }}"
            errorMessage: the task did not get the secret input
          - id: call
            type: core.flow.Subflow
            namespace: tests
            flowId: child
            inputs:
              token: "{{ secret('API_KEY') }}"
        """.replace("PASSWORD_SHA", sha256(password)),
        inputs={"password": password},
    )
    assert finished.state == "SUCCESS", finished.summary()
    child = engine.execution(finished.run("call")["outputs"]["executionId"])
    assert child is not None and child["state"] == "SUCCESS"

    assert_not_in_store(tmp_path / "data", password)
    assert_not_in_store(tmp_path / "data", SECRET)
