"""Container tasks through the engine: the runner each task names, the deployment's
default, kills, leftovers of a stopped engine, and the container limit."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import docker
import pytest
from conftest import EngineFactory, Flows
from dockerengine import BUSYBOX, PYTHON, containers, docker_api
from waiting import wait_until

from headwater.daemon.engine.containers import owner_label
from headwater.runners.docker import LABEL_OWNER
from headwater.runners.docker_settings import DockerSettings

pytestmark = pytest.mark.integration

IMAGES = {"shell": BUSYBOX, "python": PYTHON}


@pytest.fixture(scope="module")
def api() -> docker.APIClient:
    return docker_api()


def owned(api: docker.APIClient, data_dir: Path) -> list[dict[str, object]]:
    """Containers of the engine on `data_dir` (its owner label is the store's hash)."""
    return containers(api, f"{LABEL_OWNER}={owner_label(str(data_dir.resolve()))}")


def test_each_task_runs_where_its_task_runner_says(
    api: docker.APIClient, make_engine: EngineFactory
) -> None:
    flows = Flows(make_engine(docker=DockerSettings(images=IMAGES)))
    done = flows.run(
        f"""
        tasks:
          - id: host
            type: io.kestra.plugin.scripts.shell.Commands
            commands: [hostname]
          - id: boxed
            type: io.kestra.plugin.scripts.shell.Commands
            containerImage: {BUSYBOX}
            taskRunner:
              type: io.kestra.plugin.scripts.runner.docker.Docker
            env:
              FROM_HOST: "{{{{ outputs.host.exitCode }}}}"
            commands:
              - hostname
              - |
                echo '::{{"outputs": {{"code": '$FROM_HOST'}}}}::'
          - id: process
            type: scripts.python.Script
            taskRunner:
              type: core.runner.Process
            script: import socket; print(socket.gethostname())
        """
    )
    assert done.state == "SUCCESS", done.summary()
    host = socket.gethostname()
    assert done.messages("host") == [host]
    (container,) = done.messages("boxed")
    assert container != host
    assert done.run("boxed")["outputs"]["vars"] == {"code": 0}
    assert done.messages("process") == [host]


def test_the_deployments_default_runner_and_image(
    api: docker.APIClient, make_engine: EngineFactory
) -> None:
    engine = make_engine(default_runner="docker", docker=DockerSettings(images=IMAGES))
    done = Flows(engine).run(
        """
        tasks:
          - id: py
            type: io.kestra.plugin.scripts.python.Script
            outputFiles: ["answer.txt"]
            script: |
              import socket, sys
              open("answer.txt", "w").write("42")
              print(sys.executable, socket.gethostname())
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert done.messages("py") != [f"/usr/bin/python3 {socket.gethostname()}"]
    assert done.messages("py")[0].startswith("/usr/bin/python3 ")
    assert "answer.txt" in done.run("py")["outputs"]["outputFiles"]


def test_containers_in_a_working_directory_share_its_files(
    api: docker.APIClient, make_engine: EngineFactory
) -> None:
    engine = make_engine(default_runner="docker", docker=DockerSettings(images=IMAGES))
    done = Flows(engine).run(
        """
        tasks:
          - id: dir
            type: core.flow.WorkingDirectory
            inputFiles:
              greeting.txt: hello
            outputFiles: ["result.txt"]
            tasks:
              - id: write
                type: scripts.shell.Commands
                commands: ["cat greeting.txt > result.txt", "echo ' and from write' >> result.txt"]
              - id: read
                type: scripts.python.Commands
                commands: ["python -c 'import sys; print(open(sys.argv[1]).read())' result.txt"]
        """
    )
    assert done.state == "SUCCESS", done.summary()
    assert done.messages("read") == ["hello and from write"]  # (blank lines are not logged)
    assert "result.txt" in done.run("dir")["outputs"]["outputFiles"]


def test_killing_an_execution_removes_its_container(
    api: docker.APIClient, make_engine: EngineFactory, tmp_path: Path
) -> None:
    engine = make_engine(docker=DockerSettings(images=IMAGES, kill_grace=1.0))
    flows = Flows(engine)
    execution_id = flows.start(
        """
        tasks:
          - id: long
            type: scripts.shell.Commands
            taskRunner: {type: scripts.runner.docker.Docker}
            commands: ["echo started", "sleep 60"]
        """
    )
    label = f"headwater.execution={execution_id}"
    wait_until(lambda: containers(api, label), 15, "the container to start")
    engine.kill(execution_id)
    done = flows.finish(execution_id)
    assert done.state == "KILLED", done.summary()
    assert containers(api, label) == []


def test_a_restarted_engine_removes_the_containers_of_attempts_that_no_longer_run(
    api: docker.APIClient, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    owner = owner_label(str(data_dir.resolve()))
    labels = {LABEL_OWNER: owner, "headwater.taskrun": "gone", "headwater.attempt": "1"}
    left = api.create_container(BUSYBOX, ["sleep", "60"], labels=labels)["Id"]
    api.start(left)
    try:
        make_engine(data_dir=data_dir)
        wait_until(lambda: not owned(api, data_dir), 15, "the leftover container to go")
    finally:
        if owned(api, data_dir):
            api.remove_container(left, force=True)


def test_a_burst_of_container_tasks_waits_for_the_container_limit(
    api: docker.APIClient, make_engine: EngineFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    engine = make_engine(
        data_dir=data_dir, workers=4, docker=DockerSettings(images=IMAGES, max_containers=2)
    )
    most = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal most
        while not stop.is_set():
            running = [c for c in owned(api, data_dir) if c.get("State") == "running"]
            most = max(most, len(running))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        children = "".join(
            f"      - id: c{i}\n"
            "        type: scripts.shell.Commands\n"
            "        taskRunner: {type: scripts.runner.docker.Docker}\n"
            '        commands: ["sleep 2"]\n'
            for i in range(4)
        )
        done = Flows(engine).run(
            "tasks:\n  - id: burst\n    type: io.kestra.plugin.core.flow.Parallel\n"
            f"    tasks:\n{children}",
            timeout=60,
        )
    finally:
        stop.set()
        watcher.join()
    assert done.state == "SUCCESS", done.summary()
    assert most == 2
    assert [r["state"] for r in done.runs if r["task_id"].startswith("c")] == ["SUCCESS"] * 4
