"""Every valid flow of the test corpus runs through the engine to its `# outcome:`.

A manual execution with no inputs, as tests/corpus/README.md says; what `# needs:` lists
is supplied where this machine can: subflows (every corpus flow is deployed first),
a resume for pauses, secrets through `SECRET_*`, a few namespace files, and a local
HTTP server for the flows whose URL is configurable. The rest is skipped, saying why.
"""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TERMINAL, Finished, Flows, serve_http, stop_engine
from dockerengine import PYTHON, alias_image, docker_api, unavailable_reason
from nodejs import unavailable_reason as node_unavailable
from waiting import wait_until

from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.engine.flows import parse_flow
from headwater.runners.docker_settings import DockerSettings

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "valid"
FILES = sorted(CORPUS.glob("*.yaml"))
SECRET_VALUE = "corpus-secret-value"

# Namespace files (`_files/`) the corpus flows read, as a deployment would supply them.
NAMESPACE_FILES: dict[str, dict[str, bytes]] = {
    "corpus.analytics": {"project/dbt_project.yml": b"name: analytics\n"},
    "corpus.ops": {"bin/rotate.sh": b"#!/bin/sh\necho rotate\n"},
    "corpus.selfservice": {
        "templates/load.sql": b"COPY target FROM 'data.csv';\n",
        "samples/prices.csv": b"sku,price\nA1,3.50\n",
    },
    "corpus.ml": {
        "train.py": b"import os, sys\n"
        b"out = sys.argv[sys.argv.index('--out') + 1]\n"
        b"metrics = sys.argv[sys.argv.index('--metrics') + 1]\n"
        b"open(out, 'wb').write(os.environ['EPOCHS'].encode())\n"
        b"open(metrics, 'w').write('{\"auc\": 0.5}')\n",
        "models/v3/model.txt": b"weights\n",
    },
}
# The Docker flows name public images and a host directory: the test images stand in for
# the images (no registry is reachable), and the directory is made for the run.
IMAGE_ALIASES = {"python:3.11-slim": PYTHON}
DATASETS = Path("/srv/datasets")

# Flows whose HTTP calls go where a test can point them (the local server): by an
# input, by a secret holding the URL, or through a subflow that does.
LOCAL_URL_INPUTS = {"ops_healthcheck": {"endpoint": "{url}/health"}}
LOCAL_URL_SECRETS = {"SLACK_WEBHOOK_URL": "{url}/slack"}
LOCAL_URL_FLOWS = {"ops_healthcheck", "notify_slack", "notify_on_failure"}


def header(path: Path) -> tuple[str, set[str]]:
    text = path.read_text(encoding="utf-8")
    outcome = re.search(r"(?m)^# outcome: *(\w+)", text)
    needs = re.search(r"(?m)^# needs:(.*)$", text)
    assert outcome is not None and needs is not None, f"{path.name} lacks its header"
    return outcome[1], {n.strip() for n in needs[1].split(",") if n.strip()}


def skip_reason(path: Path, needs: set[str]) -> str | None:
    name = path.stem
    if "docker" in needs and (reason := unavailable_reason()):
        return reason
    if "node" in needs and (reason := node_unavailable()):
        return reason
    if "network" in needs and name not in LOCAL_URL_FLOWS:
        uris = re.findall(r"(?m)^\s*uri: *(\S+)", path.read_text(encoding="utf-8"))
        if not uris:
            return "needs the network (a script downloads packages, or an image is pulled)"
        return f"needs the network (calls {', '.join(uris)})"
    return None


def corpus_secrets(url: str) -> dict[str, str]:
    names = set()
    for path in FILES:
        names |= set(re.findall(r"secret\('([A-Z0-9_]+)'\)", path.read_text(encoding="utf-8")))
    values = dict.fromkeys(names, SECRET_VALUE)
    values.update({name: value.format(url=url) for name, value in LOCAL_URL_SECRETS.items()})
    return {f"SECRET_{k}": base64.b64encode(v.encode()).decode() for k, v in values.items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flows, str]]:
    """One engine for the whole corpus, with every corpus flow deployed."""
    with serve_http() as served:
        engine = Engine(
            EngineSettings(
                data_dir=tmp_path_factory.mktemp("corpus"),
                workers=4,
                lease_seconds=5.0,
                heartbeat_seconds=0.2,
                docker=DockerSettings(allowed_volumes=(DATASETS,)),
            ),
            environ=corpus_secrets(served.url),
            namespace_files=lambda namespace, _commit: NAMESPACE_FILES.get(namespace, {}),
        )
        for path in FILES:
            engine.deploy_source(path.read_text(encoding="utf-8"), str(path.relative_to(CORPUS)))
        engine.start()
        try:
            yield Flows(engine), served.url
        finally:
            stop_engine(engine)


@pytest.fixture(scope="module")
def docker_flows() -> Iterator[None]:
    """What the Docker flows of the corpus expect on the host: images and a data set."""
    api = docker_api()
    for alias, image in IMAGE_ALIASES.items():
        alias_image(api, image, alias)
    made = next((path for path in (DATASETS, DATASETS / "churn") if not path.exists()), None)
    (DATASETS / "churn").mkdir(parents=True, exist_ok=True)
    yield
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)


def run_resuming(flows: Flows, execution_id: str, timeout: float = 20.0) -> Finished:
    """Run to the end, resuming the execution whenever it is PAUSED (a person approving)."""

    def ended() -> bool:
        state = flows.state_of(execution_id)
        if state == "PAUSED":
            flows.engine.executor.resume(execution_id)
        return state in TERMINAL

    wait_until(ended, timeout, f"execution {execution_id} to end")
    return flows.read(execution_id)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_corpus_flow_runs_to_its_outcome(
    path: Path, corpus: tuple[Flows, str], request: pytest.FixtureRequest
) -> None:
    flows, url = corpus
    outcome, needs = header(path)
    reason = skip_reason(path, needs)
    if reason:
        pytest.skip(reason)
    if "docker" in needs:
        request.getfixturevalue("docker_flows")
    flow = parse_flow(path.read_text(encoding="utf-8"), path.name)
    inputs: dict[str, Any] = {
        k: v.format(url=url) for k, v in LOCAL_URL_INPUTS.get(flow.id, {}).items()
    }
    execution = flows.engine.start_execution(
        ExecutionRequest(flow.namespace, flow.id, inputs=inputs)
    )
    finished = run_resuming(flows, execution["id"])
    assert finished.state == outcome, finished.summary()
    assert all(r["state"] in (*TERMINAL, "SKIPPED") for r in finished.runs), finished.summary()
    assert SECRET_VALUE not in str(finished.logs) + str(finished.runs), "a secret leaked"
