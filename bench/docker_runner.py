"""What Headwater adds to a container task over running the container with the SDK alone.

Five ways of running a one-line shell command (`echo hello`) in the busybox test image
(`headwater-test/busybox`, made by scripts/services.d/docker), 20 at a time, in rounds
interleaved so drift hits all alike, after one warm-up round:

- sdk:       `docker.from_env().containers.run(image, command, remove=True)`, 20 times;
- runner:    `DockerRunner.run` alone, 20 times (no engine, no store);
- copyback:  the same with `keep_files=True`: the working directory is copied back
             after each run, as for a task with `outputFiles`;
- volume:    `DockerRunner.run` with one read-only volume of an allowed directory (opened
             without following links, mounted through an engine volume of the run's own:
             docs/runners.md, "Volumes");
- headwater: one execution of a flow of 20 sequential `scripts.shell.Commands` tasks
             with the Docker taskRunner, through an embedded engine (`headwater run`'s
             setup: SQLite, 4 workers), from the request to the end of the execution;
- mount:     the same flow with `files="mount"` (working directories bind-mounted).

Prints the median per task of each (and the best round), the difference per task over
the SDK, and the ratio. Target: Headwater adds at most 100 ms per task. A container
start costs hundreds of milliseconds and moves with the machine's load: the load
average is printed before and after.

    python bench/docker_runner.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker

from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.engine.flows import parse_flow
from headwater.runners.base import ContainerOptions, RunSpec, Stream
from headwater.runners.docker import DockerRunner
from headwater.runners.docker_settings import DockerSettings, FileHandling

IMAGE = "headwater-test/busybox:latest"
COMMAND = ["/bin/sh", "-c", "echo hello"]
TASKS = 20
TARGET_MS = 100.0


def flow_source(tasks: int) -> str:
    lines = ["id: containers", "namespace: bench", "tasks:"]
    for i in range(tasks):
        lines += [
            f"  - id: t{i}",
            "    type: io.kestra.plugin.scripts.shell.Commands",
            f"    containerImage: {IMAGE}",
            "    taskRunner:",
            "      type: io.kestra.plugin.scripts.runner.docker.Docker",
            "    commands: [echo hello]",
        ]
    return "\n".join(lines) + "\n"


class Flow:
    """An embedded engine with the flow deployed; `run()` times one execution."""

    def __init__(self, folder: Path, files: FileHandling) -> None:
        docker_settings = DockerSettings(images={"shell": IMAGE}, files=files)
        self.engine = Engine(EngineSettings(data_dir=folder, docker=docker_settings))
        source = flow_source(TASKS)
        parse_flow(source, "bench/containers.yaml")
        self.engine.deploy_source(source, "bench/containers.yaml")
        self.engine.start()

    def run(self) -> float:
        started = time.perf_counter()
        execution = self.engine.start_execution(ExecutionRequest("bench", "containers"))
        row = self.engine.wait(execution["id"], timeout=300, poll=0.01)
        seconds = time.perf_counter() - started
        assert row["state"] == "SUCCESS", row
        return seconds

    def stop(self) -> None:
        self.engine.stop(grace=5)


def sdk_round(client: docker.DockerClient) -> float:
    started = time.perf_counter()
    for _ in range(TASKS):
        output = client.containers.run(IMAGE, COMMAND, remove=True)
        assert output == b"hello\n", output
    return time.perf_counter() - started


def runner_round(
    runner: DockerRunner, workdir: Path, keep_files: bool, volumes: tuple[str, ...] = ()
) -> float:
    lines: list[str] = []

    def keep(_stream: Stream, line: str) -> None:
        lines.append(line)

    started = time.perf_counter()
    for _ in range(TASKS):
        options = ContainerOptions(volumes=volumes)
        spec = RunSpec(COMMAND, workdir, image=IMAGE, keep_files=keep_files, container=options)
        result = runner.run(spec, keep, threading.Event())
        assert result.succeeded, result
    assert lines == ["hello"] * TASKS, lines
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="measured rounds (default 10)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    client = docker.from_env()
    version = client.version()
    print(f"Docker engine {version['Version']} (API {version['ApiVersion']}), {IMAGE}")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        workdir = folder / "work"
        workdir.mkdir()
        data = folder / "data"
        (data / "set").mkdir(parents=True)
        runner = DockerRunner(DockerSettings(allowed_volumes=(data,)))
        mounted = (f"{data}/set:/data:ro",)
        flows = {files: Flow(folder / files, files) for files in ("copy", "mount")}
        ways: dict[str, Callable[[], float]] = {
            "sdk": lambda: sdk_round(client),
            "runner": lambda: runner_round(runner, workdir, keep_files=False),
            "copyback": lambda: runner_round(runner, workdir, keep_files=True),
            "volume": lambda: runner_round(runner, workdir, keep_files=False, volumes=mounted),
            "headwater": flows["copy"].run,
            "mount": flows["mount"].run,
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        try:
            for round_ in range(args.rounds + 1):
                for name, way in ways.items():
                    seconds = way()
                    if round_:  # the first round warms up
                        times[name].append(seconds / TASKS)
        finally:
            for flow in flows.values():
                flow.stop()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    report(times, args.rounds)


def report(times: dict[str, list[float]], rounds: int) -> None:
    print(f"\n{TASKS} sequential one-line tasks, {rounds} rounds; per task:")
    sdk, sdk_best = statistics.median(times["sdk"]), min(times["sdk"])
    for name, values in times.items():
        median, best = statistics.median(values), min(values)
        line = f"  {name:<10} median {1000 * median:6.1f} ms, best round {1000 * best:6.1f} ms"
        if name != "sdk":
            more, more_best = 1000 * (median - sdk), 1000 * (best - sdk_best)
            line += f"; over the SDK {more:+6.1f} ms (best {more_best:+6.1f}), x{median / sdk:.2f}"
        print(line)
    overhead = 1000 * (statistics.median(times["headwater"]) - sdk)
    verdict = "met" if overhead <= TARGET_MS else "missed"
    print(
        f"\nHeadwater overhead per task: {overhead:.1f} ms (target {TARGET_MS:.0f} ms: {verdict})"
    )


if __name__ == "__main__":
    main()
