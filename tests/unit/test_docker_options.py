"""What a Docker taskRunner asks for, as the runner receives it; checks without an engine."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from fake_task_context import FakeContext, ScriptedRunner

from headwater.daemon.engine.containers import deployment_check
from headwater.daemon.engine.taskapi import TaskFailed
from headwater.daemon.settings import Settings
from headwater.runners.base import ContainerOptions, RunSpec
from headwater.runners.docker import DockerRunner, _archive, _split_entrypoint
from headwater.runners.docker_settings import ContainerRefused, DockerSettings
from headwater.runners.docker_volumes import check_volumes

pytestmark = pytest.mark.unit


def spec_of(tmp_path: Path, **raw: object) -> RunSpec:
    ctx = FakeContext(
        {"id": "t", "type": "scripts.shell.Commands", "commands": ["true"], **raw}, tmp_path
    )
    ctx.run()
    assert isinstance(ctx.runner, ScriptedRunner)
    (spec,) = ctx.runner.specs
    return spec


def test_docker_task_runner_options_reach_the_run_spec(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        taskRunner={
            "type": "io.kestra.plugin.scripts.runner.docker.Docker",
            "pullPolicy": "NEVER",
            "memory": {"memory": "1GB", "memorySwap": "1.5GB"},
            "networkMode": "{{ 'none' }}",
            "volumes": ["/srv/data/{{ inputs.name }}:/data:ro"],
            "user": "1000:1000",
            "entryPoint": ["/bin/sh", "-c"],
        },
    )
    assert spec.container == ContainerOptions(
        pull_policy="NEVER",
        network_mode="none",
        volumes=("/srv/data/World:/data:ro",),
        user="1000:1000",
        entrypoint=("/bin/sh", "-c"),
    )
    assert spec.limits.memory_bytes == 1024**3
    assert spec.limits.memory_swap_bytes == int(1.5 * 1024**3)


def test_a_process_task_has_default_container_options(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, taskRunner={"type": "core.runner.Process"})
    assert spec.container == ContainerOptions()
    assert spec.image is None


def test_a_bad_memory_swap_fails_naming_the_property(tmp_path: Path) -> None:
    with pytest.raises(TaskFailed, match=r"taskRunner.memory.memorySwap must be like 512MB"):
        spec_of(
            tmp_path,
            taskRunner={
                "type": "scripts.runner.docker.Docker",
                "memory": {"memory": "1GB", "memorySwap": "lots"},
            },
        )


def test_entrypoint_clears_the_images_own_or_is_not_repeated() -> None:
    command = ["/bin/sh", "-c", "echo hi"]
    assert _split_entrypoint(None, command) == ([""], command)
    assert _split_entrypoint(("/bin/sh", "-c"), command) == (["/bin/sh", "-c"], ["echo hi"])
    assert _split_entrypoint(("/tini", "--"), command) == (["/tini", "--"], command)


def test_volumes_keep_the_mode_and_refuse_links_files_and_going_up(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "set").mkdir(parents=True)
    (data / "rows.csv").write_text("a,b\n")
    (data / "link").symlink_to(data / "set")  # even one that stays inside
    (tmp_path / "outer").symlink_to(data)
    found = check_volumes([f"{data}//set/:/in:ro", f"{data}:/all", f"{data}/new:/new"], [data])
    assert [(str(v.host), v.target, v.mode) for v in found] == [
        (f"{data}/set", "/in", "ro"),
        (f"{data}", "/all", "rw"),
        (f"{data}/new", "/new", "rw"),  # missing now: a run makes it
    ]
    for volume, reason in [
        (f"{data}/link:/in", rf"{data}/link is a symbolic link: a volume's path may not go"),
        (f"{data}/link/deeper:/in", rf"{data}/link is a symbolic link"),
        (f"{data}/rows.csv:/in", r"is not a directory: only directories can be mounted"),
        (f"{data}/../data/set:/in", r"goes up with '..'"),
        (f"{tmp_path}/outer/set:/in", r"is not under a directory this deployment lets"),
        ("/etc:/etc", r"'/etc:/etc': /etc is not under"),
    ]:
        with pytest.raises(ContainerRefused, match=reason):
            check_volumes([volume], [data])
    with pytest.raises(ContainerRefused, match=r"HEADWATER_DOCKER_VOLUMES: none"):
        check_volumes(["/etc:/etc"], [])
    with pytest.raises(ContainerRefused, match=rf"{tmp_path}/outer is a symbolic link"):
        check_volumes([f"{tmp_path}/outer/set:/in"], [tmp_path / "outer"])


def test_archive_puts_the_working_directory_at_its_own_path(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "a.txt").write_text("a")

    def members(user: str | None) -> dict[str, tarfile.TarInfo]:
        with tarfile.open(fileobj=io.BytesIO(_archive(work, user))) as archive:
            return {member.name: member for member in archive.getmembers()}

    root = str(work).lstrip("/")
    plain = members(None)
    assert sorted(plain) == [root, f"{root}/sub", f"{root}/sub/a.txt"]
    numeric = members("1000:2000")
    assert {(m.uid, m.gid) for m in numeric.values()} == {(1000, 2000)}
    named = members("nobody")
    assert named[root].mode & 0o777 == 0o777
    assert named[f"{root}/sub/a.txt"].mode & 0o666 == 0o666


def test_docker_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_DEFAULT_RUNNER", "docker")
    monkeypatch.setenv("HEADWATER_DOCKER_VOLUMES", "/srv/a:/srv/b")
    monkeypatch.setenv("HEADWATER_DOCKER_NETWORK", "false")
    monkeypatch.setenv("HEADWATER_DOCKER_MAX_CONTAINERS", "2")
    monkeypatch.setenv("HEADWATER_DOCKER_IMAGE_PYTHON", "python:3.12-slim")
    settings = Settings()
    assert settings.default_runner == "docker"
    assert settings.docker_volumes == [Path("/srv/a"), Path("/srv/b")]
    assert settings.docker_network is False
    assert settings.docker_max_containers == 2
    assert settings.docker_image_python == "python:3.12-slim"
    runner = settings.docker_settings()
    assert runner.allowed_volumes == (Path("/srv/a"), Path("/srv/b"))
    assert (runner.network, runner.max_containers) == (False, 2)
    assert runner.images["python"] == "python:3.12-slim"
    assert runner.images["shell"] == "ubuntu"
    monkeypatch.setenv("HEADWATER_DEFAULT_RUNNER", "kubernetes")
    with pytest.raises(ValueError, match="default_runner"):
        Settings()


def test_network_modes_that_share_a_namespace_are_refused() -> None:
    runner = DockerRunner(DockerSettings())
    for mode in ("host", "container:abc"):
        with pytest.raises(ContainerRefused, match=f"networkMode {mode}: refused"):
            runner.network_mode(mode)
    assert runner.network_mode(None) == "bridge"
    assert runner.network_mode("backend") == "backend"
    closed = DockerRunner(DockerSettings(network=False))
    assert closed.network_mode(None) == "none"
    with pytest.raises(ContainerRefused, match="HEADWATER_DOCKER_NETWORK=false"):
        closed.network_mode("bridge")


def test_files_are_kept_for_output_files_or_a_shared_working_directory(tmp_path: Path) -> None:
    assert not spec_of(tmp_path).keep_files
    assert spec_of(tmp_path, outputFiles=["*.csv"]).keep_files
    ctx = FakeContext({"id": "t", "type": "scripts.shell.Commands", "commands": ["true"]}, tmp_path)
    ctx.shared_workdir = True
    ctx.run()
    assert isinstance(ctx.runner, ScriptedRunner)
    assert ctx.runner.specs[0].keep_files


def test_pull_policy_from_an_expression_is_checked(tmp_path: Path) -> None:
    docker = {"type": "scripts.runner.docker.Docker", "pullPolicy": "{{ 'NEVER' }}"}
    assert spec_of(tmp_path, taskRunner=docker).container.pull_policy == "NEVER"
    docker["pullPolicy"] = "{{ 'SOMETIMES' }}"
    with pytest.raises(TaskFailed, match="pullPolicy must be ALWAYS, IF_NOT_PRESENT or NEVER"):
        spec_of(tmp_path, taskRunner=docker)


def test_deploy_check_finds_docker_runners_however_nested(tmp_path: Path) -> None:
    check = deployment_check(DockerSettings(allowed_volumes=(tmp_path,), network=False))
    docker = "io.kestra.plugin.scripts.runner.docker.Docker"
    raw = {
        "tasks": [
            {
                "id": "p",
                "type": "core.flow.Parallel",
                "tasks": [
                    {
                        "id": "a",
                        "taskRunner": {
                            "type": docker,
                            "volumes": [f"{tmp_path}/in:/in", "/srv:/srv", "{{ inputs.v }}:/x"],
                            "networkMode": "bridge",
                        },
                    },
                    {"id": "b", "taskRunner": {"type": "core.runner.Process"}},
                ],
            }
        ],
        "errors": [{"id": "c", "taskRunner": {"type": docker, "networkMode": "{{ x }}"}}],
    }
    problems = check(raw)
    runner = ("tasks", 0, "tasks", 0, "taskRunner")
    assert [path for path, _ in problems] == [(*runner, "volumes", 1), (*runner, "networkMode")]
    assert "HEADWATER_DOCKER_NETWORK=false" in problems[1][1]
