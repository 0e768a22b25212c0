"""The Docker runner on a real Docker engine: lines, files, env, limits, stopping, leftovers.

Images: `headwater-test/busybox` (shell) and `headwater-test/python`, built locally by
scripts/services.d/docker. Every container a test starts carries a `headwater.owner`
of its own, so tests look only at their own containers.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from dockerengine import BUSYBOX, PYTHON, containers, docker_api
from fake_task_context import FakeContext
from waiting import wait_until

from headwater.daemon.engine.states import State
from headwater.runners.base import ContainerOptions, Limits, RunResult, RunSpec, Stream
from headwater.runners.docker import LABEL_OWNER, DockerRunner
from headwater.runners.docker_settings import DockerSettings
from headwater.runners.docker_volumes import LABEL_PID, check_volumes

pytestmark = pytest.mark.integration

GRACE = 1.0
HANG = 20.0  # seconds: a stop this long waited for the `sleep 30` it should have ended


@pytest.fixture(scope="module")
def api() -> docker.APIClient:
    return docker_api()


@dataclass
class Harness:
    api: docker.APIClient
    owner: str
    workdir: Path

    def runner(self, **settings: Any) -> DockerRunner:
        options: dict[str, Any] = {"owner": self.owner, "kill_grace": GRACE, **settings}
        return DockerRunner(DockerSettings(**options))

    def mine(self) -> list[dict[str, Any]]:
        return containers(self.api, f"{LABEL_OWNER}={self.owner}")

    def my_volumes(self) -> list[str]:
        found = self.api.volumes(filters={"label": f"{LABEL_OWNER}={self.owner}"})
        return [volume["Name"] for volume in found.get("Volumes") or []]


@pytest.fixture
def harness(api: docker.APIClient, tmp_path: Path) -> Iterator[Harness]:
    workdir = tmp_path / "work"
    workdir.mkdir()
    found = Harness(api, f"test-{uuid.uuid4().hex[:12]}", workdir)
    yield found
    for container in found.mine():  # a failed test leaves nothing behind either
        api.remove_container(container["Id"], force=True)
    for volume in found.my_volumes():
        api.remove_volume(volume, force=True)


@dataclass
class Outcome:
    result: RunResult
    lines: list[tuple[Stream, str]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    """When each line arrived (time.monotonic)."""

    def out(self) -> list[str]:
        return [line for stream, line in self.lines if stream == "stdout"]

    def err(self) -> list[str]:
        return [line for stream, line in self.lines if stream == "stderr"]


def run(
    harness: Harness,
    command: str | list[str],
    image: str = BUSYBOX,
    cancel: threading.Event | None = None,
    runner: DockerRunner | None = None,
    **spec: Any,
) -> Outcome:
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else command
    outcome = Outcome(RunResult(exit_code=None, duration=0.0))

    def on_line(stream: Stream, line: str) -> None:
        outcome.lines.append((stream, line))
        outcome.times.append(time.monotonic())

    full = RunSpec(argv, harness.workdir, image=image, labels={"headwater.taskrun": "r"}, **spec)
    outcome.result = (runner or harness.runner()).run(full, on_line, cancel or threading.Event())
    return outcome


# -- output ----------------------------------------------------------------------------


def test_lines_of_both_streams_arrive_whole_and_in_order(harness: Harness) -> None:
    # printf without a newline, then a pause: the engine sends the marker in two frames
    command = (
        "echo one; echo two >&2; printf '::{\"outputs\": '; sleep 0.3; "
        "echo '{\"rows\": 3}}::'; printf 'last without newline'"
    )
    outcome = run(harness, command)
    assert outcome.result.succeeded, outcome.result
    assert outcome.result.exit_code == 0
    assert outcome.out() == ["one", '::{"outputs": {"rows": 3}}::', "last without newline"]
    assert outcome.err() == ["two"]


def test_lines_stream_while_the_container_runs(harness: Harness) -> None:
    outcome = run(harness, "echo first; sleep 1; echo second")
    assert outcome.out() == ["first", "second"]
    assert outcome.times[1] - outcome.times[0] > 0.7


def test_every_line_arrives_once_when_containers_start_together(harness: Harness) -> None:
    """Lines printed the moment a container starts came twice on a busy engine, when the
    output was attached with the engine's log replayed as well (seen with 6 at once)."""
    outcomes: list[Outcome] = []

    def one() -> None:
        outcomes.append(run(harness, "seq 1 300"))

    for _ in range(3):
        threads = [threading.Thread(target=one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(outcomes) == 18
    for outcome in outcomes:
        assert outcome.result.succeeded, outcome.result
        assert outcome.out() == [str(n) for n in range(1, 301)]


def test_exit_code_and_a_command_that_does_not_exist(harness: Harness) -> None:
    assert run(harness, "exit 3").result.exit_code == 3
    missing = run(harness, ["/no/such/program"])
    assert missing.result.exit_code == 127  # as a shell says it
    assert "exec /no/such/program failed: No such file or directory" in missing.err()[-1]
    assert harness.mine() == []


# -- files and environment -------------------------------------------------------------


def test_files_go_in_and_come_out_at_the_working_directory(harness: Harness) -> None:
    (harness.workdir / "data").mkdir()
    (harness.workdir / "data" / "in.txt").write_text("41\n")
    command = (
        'test "$(pwd)" = "$WORKING_DIR"; mkdir -p out; '
        "echo $(( $(cat data/in.txt) + 1 )) > out/result.txt; rm data/in.txt"
    )
    outcome = run(harness, command, env={"WORKING_DIR": str(harness.workdir)})
    assert outcome.result.succeeded, (outcome.result, outcome.lines)
    assert (harness.workdir / "out" / "result.txt").read_text() == "42\n"
    assert harness.mine() == []


def test_links_out_of_the_working_directory_are_not_copied_back(harness: Harness) -> None:
    outcome = run(harness, "echo ok > ok.txt; ln -s /etc/passwd abs; ln -s ../../x up")
    assert outcome.result.succeeded, outcome.result
    assert sorted(p.name for p in harness.workdir.iterdir()) == ["ok.txt"]


def test_files_are_not_copied_back_unless_kept(harness: Harness) -> None:
    (harness.workdir / "in.txt").write_text("x")
    outcome = run(harness, "cat in.txt; echo y > out.txt", keep_files=False)
    assert outcome.out() == ["x"]
    assert sorted(p.name for p in harness.workdir.iterdir()) == ["in.txt"]


def test_a_non_root_user_can_write_in_the_working_directory(harness: Harness) -> None:
    (harness.workdir / "in.txt").write_text("x")
    options = ContainerOptions(user="65534:65534")
    outcome = run(harness, "id -u; cat in.txt > copy.txt", container=options)
    assert outcome.result.succeeded, (outcome.result, outcome.lines)
    assert outcome.out() == ["65534"]
    assert (harness.workdir / "copy.txt").read_text() == "x"


def test_mounted_working_directory(harness: Harness) -> None:
    (harness.workdir / "in.txt").write_text("mounted")
    outcome = run(harness, "cat in.txt > out.txt", runner=harness.runner(files="mount"))
    assert outcome.result.succeeded, (outcome.result, outcome.lines)
    assert (harness.workdir / "out.txt").read_text() == "mounted"


def test_only_the_tasks_variables_reach_the_container(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADWATER_TOKEN", "secret-token")
    monkeypatch.setenv("PATH", "/host/only/bin")
    nasty = "$(touch pwned); echo 'x' \"y\" `id`"
    outcome = run(
        harness,
        'echo "token=${HEADWATER_TOKEN:-none}"; echo "$NASTY"; echo "$PATH"',
        env={"NASTY": nasty},
    )
    assert outcome.result.succeeded, outcome.lines
    path = outcome.out()[2]
    assert outcome.out()[:2] == ["token=none", nasty]
    assert "/host/only/bin" not in path
    assert "/bin" in path.split(":")
    assert not (harness.workdir / "pwned").exists()


# -- limits, network, volumes ------------------------------------------------------------


def test_a_container_past_its_memory_limit_is_reported_out_of_memory(harness: Harness) -> None:
    outcome = run(
        harness,
        ["python3", "-c", "b = bytearray(256 * 2**20); print('survived')"],
        image=PYTHON,
        limits=Limits(memory_bytes=64 * 2**20),
    )
    assert outcome.result.oom_killed, outcome.result
    assert not outcome.result.succeeded
    assert "survived" not in outcome.out()
    fits = run(
        harness,
        ["python3", "-c", "b = bytearray(8 * 2**20); print('fits')"],
        image=PYTHON,
        limits=Limits(memory_bytes=64 * 2**20),
    )
    assert fits.result.succeeded, fits.result
    assert not fits.result.oom_killed


def test_cpu_limit_reaches_the_container(harness: Harness) -> None:
    outcome = run(
        harness,
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max 2>/dev/null; true",
        limits=Limits(cpus=0.5),
    )
    assert outcome.result.succeeded
    assert outcome.out()[0].split()[0] == "50000"  # of a 100000 µs period: half a CPU


def test_no_network_unless_the_deployment_allows_it(harness: Harness) -> None:
    closed = harness.runner(network=False)
    alone = run(harness, "ls /sys/class/net", runner=closed)
    assert alone.result.succeeded
    assert alone.out() == ["lo"]
    bridge = ContainerOptions(network_mode="bridge")
    refused = run(harness, "true", runner=closed, container=bridge)
    assert refused.result.error is not None
    assert "networkMode bridge: this deployment does not let containers use the network" in (
        refused.result.error
    )
    opened = run(harness, "ls /sys/class/net", container=bridge)
    assert "eth0" in opened.out()


def test_volumes_only_under_allowed_directories(harness: Harness, tmp_path: Path) -> None:
    allowed = tmp_path / "datasets"
    (allowed / "churn").mkdir(parents=True)
    (allowed / "churn" / "rows.csv").write_text("a,b\n")
    (tmp_path / "private").mkdir()
    (allowed / "escape").symlink_to(tmp_path / "private")
    runner = harness.runner(allowed_volumes=(allowed,))

    mounted = ContainerOptions(volumes=(f"{allowed}/churn:/data:ro",))
    outcome = run(harness, "cat /data/rows.csv; touch /data/x", runner=runner, container=mounted)
    assert outcome.out() == ["a,b"]
    assert outcome.result.exit_code != 0  # read-only
    assert any("Read-only file system" in line for line in outcome.err())
    assert harness.my_volumes() == []  # the run's engine volume went with its container

    # Writable, and a missing directory is made (by Headwater's user, not the engine's root).
    written = ContainerOptions(volumes=(f"{allowed}/out/day:/out",))
    outcome = run(harness, "echo done > /out/result", runner=runner, container=written)
    assert outcome.result.succeeded, outcome.result
    assert (allowed / "out" / "day" / "result").read_text() == "done\n"
    assert (allowed / "out").stat().st_uid == os.getuid()

    for volume, reason in [
        (f"{tmp_path}/private:/data", "is not under a directory this deployment lets"),
        (f"{allowed}/escape:/data", "is a symbolic link"),
        ("relative:/data", "both paths must be absolute"),
        (f"{allowed}:/data:rx", "the mode must be ro or rw"),
        ("/only-one-path", "give it as /host/path:/container/path"),
    ]:
        refused = run(harness, "true", runner=runner, container=ContainerOptions(volumes=(volume,)))
        assert refused.result.error is not None, volume
        assert reason in refused.result.error, (volume, refused.result.error)
    assert harness.mine() == []
    assert harness.my_volumes() == []


def test_no_volume_is_allowed_by_default() -> None:
    with pytest.raises(Exception, match=r"HEADWATER_DOCKER_VOLUMES: none"):
        check_volumes(["/srv:/srv"], [])


# -- images ------------------------------------------------------------------------------


def test_a_missing_image_with_pull_policy_never_fails_saying_so(harness: Harness) -> None:
    outcome = run(
        harness,
        "true",
        image="headwater-test/not-built:1",
        container=ContainerOptions(pull_policy="NEVER"),
    )
    assert outcome.result.error == (
        "image 'headwater-test/not-built:1' is not on the Docker engine and pullPolicy is "
        "NEVER: load or build it there first"
    )
    assert harness.mine() == []


def test_an_image_that_cannot_be_pulled_fails_with_the_reason(harness: Harness) -> None:
    for policy in ("IF_NOT_PRESENT", "ALWAYS"):
        outcome = run(
            harness,
            "true",
            image="headwater-test/not-built:1",
            container=ContainerOptions(pull_policy=policy),  # type: ignore[arg-type]
        )
        assert outcome.result.error is not None
        assert outcome.result.error.startswith("cannot pull image 'headwater-test/not-built:1': ")


def test_a_present_image_runs_without_a_pull_when_pull_policy_allows(harness: Harness) -> None:
    for policy in ("IF_NOT_PRESENT", "NEVER"):
        options = ContainerOptions(pull_policy=policy)  # type: ignore[arg-type]
        assert run(harness, "true", container=options).result.succeeded


def test_the_default_image_of_the_language(harness: Harness) -> None:
    runner = harness.runner(images={"shell": BUSYBOX})
    outcome = run(harness, "echo default", image=None, language="shell", runner=runner)
    assert outcome.out() == ["default"]
    none = run(harness, "true", image=None, language="node", runner=runner)
    assert none.result.error == "no container image given for a node task"


# -- stopping ----------------------------------------------------------------------------


def test_a_timeout_stops_and_removes_the_container(harness: Harness) -> None:
    started = time.monotonic()
    outcome = run(harness, "echo started; sleep 30", timeout=1.0)
    assert outcome.result.timed_out
    assert not outcome.result.succeeded
    assert outcome.out() == ["started"]
    assert time.monotonic() - started < HANG
    assert harness.mine() == []


def test_a_kill_stops_and_removes_the_container(harness: Harness) -> None:
    cancel = threading.Event()
    done: list[Outcome] = []
    thread = threading.Thread(
        target=lambda: done.append(run(harness, "echo started; sleep 30", cancel=cancel))
    )
    thread.start()
    wait_until(harness.mine, 10, "the container to start")
    time.sleep(0.3)
    killed_at = time.monotonic()
    cancel.set()
    thread.join(15)
    assert done, "the run did not end after the kill"
    assert done[0].result.killed
    assert time.monotonic() - killed_at < HANG
    assert harness.mine() == []


def test_a_command_that_ignores_term_is_killed_after_the_grace(harness: Harness) -> None:
    started = time.monotonic()
    outcome = run(harness, "trap '' TERM; echo started; sleep 30", timeout=0.5)
    assert outcome.result.timed_out
    assert time.monotonic() - started < HANG
    assert harness.mine() == []


def test_a_burst_waits_for_container_slots(harness: Harness) -> None:
    runner = harness.runner(max_containers=1)
    outcomes: list[Outcome] = []
    threads = [
        threading.Thread(
            target=lambda: outcomes.append(run(harness, "echo start; sleep 0.5", runner=runner))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == 3
    assert all(o.result.succeeded for o in outcomes)
    starts = sorted(o.times[0] for o in outcomes)
    assert starts[1] - starts[0] > 0.4
    assert starts[2] - starts[1] > 0.4


# -- leftovers ---------------------------------------------------------------------------


def test_orphans_are_removed_and_live_attempts_and_other_owners_kept(harness: Harness) -> None:
    def create(owner: str, task_run: str) -> str:
        labels = {LABEL_OWNER: owner, "headwater.taskrun": task_run, "headwater.attempt": "1"}
        created = harness.api.create_container(BUSYBOX, ["sleep", "30"], labels=labels)
        harness.api.start(created["Id"])
        return str(created["Id"])

    other_owner = f"{harness.owner}-other"
    orphan, live, foreign = (
        create(harness.owner, "gone"),
        create(harness.owner, "live"),
        create(other_owner, "gone"),
    )
    try:
        removed = harness.runner().remove_orphans(
            lambda labels: labels["headwater.taskrun"] == "live"
        )
        assert removed == 1
        left = {c["Id"] for c in harness.mine()}
        assert orphan not in left
        assert live in left
        assert [c["Id"] for c in containers(harness.api, f"{LABEL_OWNER}={other_owner}")] == [
            foreign
        ]
    finally:
        harness.api.remove_container(foreign, force=True)


def test_engine_volumes_of_a_gone_process_are_removed_with_the_orphans(harness: Harness) -> None:
    gone = str(int(Path("/proc/sys/kernel/pid_max").read_text()) + 1)  # never a live process
    labels = {LABEL_OWNER: harness.owner}
    for name, pid in [("gone", gone), ("live", str(os.getpid()))]:
        harness.api.create_volume(
            f"{harness.owner}-{name}", driver="local", labels={**labels, LABEL_PID: pid}
        )
    harness.runner().remove_orphans(lambda labels: False)
    assert harness.my_volumes() == [f"{harness.owner}-live"]


# -- script tasks in containers ----------------------------------------------------------


def task_run(
    harness: Harness, tmp_path: Path, files: dict[str, bytes] | None = None, **raw: Any
) -> tuple[Any, FakeContext]:
    runner = harness.runner(images={"shell": BUSYBOX, "python": PYTHON})
    ctx = FakeContext({"id": "t", **raw}, tmp_path, runner=runner, namespace_files=files)
    return ctx.run(), ctx


def test_namespace_files_reach_the_container(harness: Harness, tmp_path: Path) -> None:
    result, ctx = task_run(
        harness,
        tmp_path,
        files={"lib/helper.py": b"ANSWER = 42\n", "notes.md": b"skip me"},
        type="scripts.python.Commands",
        taskRunner={"type": "scripts.runner.docker.Docker"},
        namespaceFiles={"enabled": True, "include": ["lib/**"]},
        commands=["ls", "cd lib && python -c 'import helper; print(helper.ANSWER)'"],
    )
    assert result.state == State.SUCCESS, (result.error, ctx.logs)
    assert ctx.lines("INFO") == ["lib", "42"]


def test_shell_script_task_in_a_container(harness: Harness, tmp_path: Path) -> None:
    result, ctx = task_run(
        harness,
        tmp_path,
        type="io.kestra.plugin.scripts.shell.Script",
        taskRunner={"type": "io.kestra.plugin.scripts.runner.docker.Docker"},
        containerImage=BUSYBOX,
        env={"NAME": "{{ inputs.name }}"},
        inputFiles={"in/n.txt": "{{ inputs.n }}"},
        outputFiles=["out.txt"],
        script=(
            'echo "hello $NAME from $(cat /etc/hostname | wc -c) chars"\n'
            "echo $(( $(cat in/n.txt) * 6 )) > out.txt\n"
            "echo '::{\"outputs\": {\"answer\": '$(cat out.txt)'}}::'\n"
        ),
    )
    assert result.state == State.SUCCESS, (result.error, ctx.logs)
    assert result.outputs["vars"] == {"answer": 42}
    assert ctx.storage.get(result.outputs["outputFiles"]["out.txt"]) == b"42\n"
    assert ctx.lines("INFO")[0].startswith("hello World from ")


def test_python_script_task_in_a_container(harness: Harness, tmp_path: Path) -> None:
    script = """
import json, os, pathlib, sys
rows = int(open("data/in.txt").read())
pathlib.Path("out").mkdir()
pathlib.Path("out/report.csv").write_text(f"rows,{rows}\\n")
print("::" + json.dumps({"outputs": {"rows": rows, "python": sys.executable}}) + "::")
"""
    result, ctx = task_run(
        harness,
        tmp_path,
        type="scripts.python.Script",
        taskRunner={"type": "scripts.runner.docker.Docker", "pullPolicy": "NEVER"},
        script=script,
        inputFiles={"data/in.txt": "{{ outputs.extract.vars.rows }}"},
        outputFiles=["out/*.csv"],
    )
    assert result.state == State.SUCCESS, (result.error, ctx.logs)
    assert result.outputs["vars"] == {"rows": 12, "python": "/usr/bin/python3"}
    assert ctx.storage.get(result.outputs["outputFiles"]["out/report.csv"]) == b"rows,12\n"


def test_memory_limit_of_a_task_fails_it_as_out_of_memory(harness: Harness, tmp_path: Path) -> None:
    result, _ = task_run(
        harness,
        tmp_path,
        type="scripts.python.Commands",
        taskRunner={"type": "scripts.runner.docker.Docker", "memory": {"memory": "64MB"}},
        commands=["python3 -c 'b = bytearray(256 * 2**20)'"],
    )
    assert result.state == State.FAILED
    assert result.error == "out of memory (killed)"


def test_missing_image_fails_the_task_with_the_reason(harness: Harness, tmp_path: Path) -> None:
    result, _ = task_run(
        harness,
        tmp_path,
        type="scripts.shell.Commands",
        containerImage="headwater-test/absent:2",
        taskRunner={"type": "scripts.runner.docker.Docker", "pullPolicy": "NEVER"},
        commands=["true"],
    )
    assert result.state == State.FAILED
    assert result.error is not None
    assert "'headwater-test/absent:2' is not on the Docker engine and pullPolicy is NEVER" in (
        result.error
    )


def test_an_unreachable_engine_fails_the_task_saying_where(tmp_path: Path) -> None:
    runner = DockerRunner(DockerSettings(host=f"unix://{tmp_path}/no.sock"))
    ctx = FakeContext(
        {"id": "t", "type": "scripts.shell.Commands", "commands": ["true"]},
        tmp_path,
        runner=runner,
    )
    result = ctx.run()
    assert result.state == State.FAILED
    assert result.error is not None
    assert result.error.startswith(f"the Docker engine at unix://{tmp_path}/no.sock failed: ")


def test_labels_name_the_execution_task_run_and_attempt(harness: Harness, tmp_path: Path) -> None:
    seen: list[dict[str, str]] = []

    def look() -> None:
        found = wait_until(harness.mine, 10, "the container")
        seen.append(found[0]["Labels"])

    watcher = threading.Thread(target=look)
    watcher.start()
    result, _ = task_run(
        harness,
        tmp_path,
        type="scripts.shell.Commands",
        taskRunner={"type": "scripts.runner.docker.Docker"},
        commands=["sleep 0.5"],
    )
    watcher.join()
    assert result.state == State.SUCCESS
    assert seen[0]["headwater.execution"] == "exec1"
    assert seen[0]["headwater.taskrun"] == "run1"
    assert seen[0]["headwater.attempt"] == "1"
