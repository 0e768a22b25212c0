"""A flow mounts nothing outside the allowed directories, racing or not (issue 11, item 1).

The attack: a task allowed to write under an allowed directory swaps a subdirectory with a
symbolic link (to `/`, to a directory beside the allowed one, absolute or relative) and
back, over and over (`renameat2` with RENAME_EXCHANGE: the name is always one or the
other), while other tasks mount that subdirectory through Headwater's Docker runner. A
path checked and then handed to the engine is resolved again when the engine mounts it:
before the fix, victims listed the host's root. Each victim lists what it mounted; the
only right answer is the subdirectory's own marker file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest
from dockerengine import BUSYBOX, PYTHON, docker_api
from waiting import wait_until

from headwater.runners.base import ContainerOptions, RunResult, RunSpec
from headwater.runners.docker import LABEL_OWNER, DockerRunner
from headwater.runners.docker_settings import DockerSettings
from headwater.runners.docker_volumes import check_volumes

MOUNTS = 1000
"""Mounts of the swapped subdirectory the victims must make (the issue asks for 1,000)."""
MOUNTS_PER_VICTIM = 5
"""Volumes of one victim run: each opened, made an engine volume and mounted on its own
(the engine mounts them one after the other), so each is one more try of the race, for
a fifth of the containers' cost."""
VICTIMS_AT_ONCE = 6
"""Victim containers at once: enough to keep the engine busy on two cores."""
MAX_VICTIMS = 8 * MOUNTS // MOUNTS_PER_VICTIM
"""Bound on victim runs: about 60% are refused here (the name was a link when opened),
and a refusal costs milliseconds."""
LINK_SECONDS = 0.0005
"""How long the attacker leaves the link in place each time."""
DIRECTORY_SECONDS = 0.002
"""How long the attacker leaves the directory in place each time (more: more mounts)."""
INSIDE = "INSIDE-THE-ALLOWED-DIRECTORY"
OUTSIDE = "OUTSIDE-THE-ALLOWED-DIRECTORY"
ATTACKER_READY = "swapping"
LINK_REFUSED = "is a symbolic link"

ATTACKER = textwrap.dedent(
    """
    import ctypes, os, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    link_seconds, directory_seconds, sub, *targets = sys.argv[1:]
    links = []
    for index, target in enumerate(targets):
        link = os.path.join(os.path.dirname(sub), f".link{index}")
        os.symlink(target, link)
        links.append(link.encode())

    def swap(link):
        if libc.renameat2(AT_FDCWD, sub.encode(), AT_FDCWD, link, RENAME_EXCHANGE) != 0:
            raise OSError(ctypes.get_errno(), "renameat2")

    print("swapping", flush=True)
    while True:
        for link in links:
            swap(link)
            time.sleep(float(link_seconds))
            swap(link)
            time.sleep(float(directory_seconds))
    """
)


@dataclass
class Site:
    """An allowed directory with the subdirectory to swap, and a directory beside it."""

    allowed: Path
    sub: Path
    outside: Path
    owner: str
    api: docker.APIClient

    def runner(self, *allowed: Path, max_containers: int = 4) -> DockerRunner:
        settings = DockerSettings(
            owner=self.owner,
            allowed_volumes=allowed or (self.allowed,),
            max_containers=max_containers,
            kill_grace=0.0,
        )
        return DockerRunner(settings)

    def leftovers(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """This test's containers and engine volumes still on the engine."""
        label = f"{LABEL_OWNER}={self.owner}"
        found = self.api.volumes(filters={"label": label}).get("Volumes") or []
        return self.api.containers(all=True, filters={"label": label}), found


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    api = docker_api()
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "sub" / INSIDE).write_text("in")
    outside.mkdir()
    (outside / OUTSIDE).write_text("out")
    found = Site(allowed, allowed / "sub", outside, f"race-{uuid.uuid4().hex[:12]}", api)
    yield found
    containers, volumes = found.leftovers()
    for container in containers:  # a failed test leaves nothing behind either
        api.remove_container(container["Id"], force=True)
    for volume in volumes:
        api.remove_volume(volume["Name"], force=True)


@dataclass
class Seen:
    result: RunResult
    listed: dict[str, set[str]]
    """The names listed in each mount, by mount point."""

    def names(self) -> set[str]:
        return set().union(*self.listed.values())


def mount(runner: DockerRunner, workdir: Path, volume: str, copies: int = 1) -> Seen:
    """Run `ls -A` of `volume` mounted `copies` times (at /mnt/0, /mnt/1, …); what each
    mount listed."""
    workdir.mkdir(parents=True)
    lines: list[str] = []
    targets = [f"/mnt/{index}" for index in range(copies)]
    spec = RunSpec(
        command=["ls", "-A", *targets],
        workdir=workdir,
        image=BUSYBOX,
        container=ContainerOptions(volumes=tuple(f"{volume}:{t}:ro" for t in targets)),
        keep_files=False,
    )
    try:
        result = runner.run(spec, lambda _stream, line: lines.append(line), threading.Event())
    except Exception as exc:  # a victim's outcome all the same (the check once raised)
        result = RunResult(exit_code=None, duration=0.0, error=f"the run raised {exc!r}")
    return Seen(result, by_mount(lines, targets))


def by_mount(lines: list[str], targets: list[str]) -> dict[str, set[str]]:
    """The names `ls -A target…` listed, by target (it heads each with `target:` when
    there are several). A line can come twice: the engine's attach may repeat output."""
    if len(targets) == 1:
        return {targets[0]: {line for line in lines if line}}
    listed: dict[str, set[str]] = {}
    here: set[str] = set()
    for line in lines:
        if line.endswith(":") and line[:-1] in targets:
            here = listed.setdefault(line[:-1], set())
        elif line:
            here.add(line)
    return listed


@dataclass
class Attacker:
    """A task allowed to write in the allowed directory, swapping `sub` with links."""

    site: Site
    ready: threading.Event
    stop: threading.Event
    thread: threading.Thread
    result: list[RunResult]

    @classmethod
    def start(cls, site: Site, workdir: Path) -> Attacker:
        targets = ["/", str(site.outside), f"../{site.outside.name}"]
        sub = f"/allowed/{site.sub.name}"
        command = ["python3", "-c", ATTACKER, str(LINK_SECONDS), str(DIRECTORY_SECONDS), sub]
        spec = RunSpec(
            command=[*command, *targets],
            workdir=workdir,
            image=PYTHON,
            container=ContainerOptions(volumes=(f"{site.allowed}:/allowed:rw",)),
            keep_files=False,
        )
        ready, stop, results = threading.Event(), threading.Event(), []

        def attack() -> None:
            def on_line(_stream: object, line: str) -> None:
                if line == ATTACKER_READY:
                    ready.set()

            results.append(site.runner().run(spec, on_line, stop))

        workdir.mkdir()
        thread = threading.Thread(target=attack, name="attacker", daemon=True)
        thread.start()
        found = cls(site, ready, stop, thread, results)
        wait_until(lambda: ready.is_set() or bool(results), timeout=60)
        assert ready.is_set(), f"the attacker did not start: {results}"
        return found

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()
        # Still swapping all along: it ended because it was stopped, not by an error.
        assert self.result and self.result[0].killed, self.result


def test_no_victim_mounts_outside_while_a_task_swaps_its_directory_for_links(
    site: Site, tmp_path: Path
) -> None:
    # The swapped subdirectory is itself an allowed directory, nested in one the attacker
    # may write: the nesting must not help either.
    runner = site.runner(site.allowed, site.sub, max_containers=VICTIMS_AT_ONCE)
    attacker = Attacker.start(site, tmp_path / "attacker")
    seen: list[Seen] = []
    try:
        with ThreadPoolExecutor(VICTIMS_AT_ONCE) as pool:
            while len(seen) < MAX_VICTIMS and mounts(seen) < MOUNTS:
                batch = range(len(seen), len(seen) + VICTIMS_AT_ONCE * 5)
                work = [tmp_path / "victims" / str(index) for index in batch]
                seen += pool.map(lambda w: mount(runner, w, str(site.sub), MOUNTS_PER_VICTIM), work)
    finally:
        attacker.end()

    ran = [s for s in seen if mounted(s)]
    refused = [s.result.error for s in seen if s.result.error is not None]
    # Each mount lists the subdirectory's marker, and nothing else.
    escaped = [s for s in ran if s.names() != {INSIDE}]
    escapes = sum(names != {INSIDE} for s in ran for names in s.listed.values())
    print(
        f"{len(seen)} victims: {len(ran)} mounted {mounts(seen)} times, {len(refused)} refused; "
        f"{len(escaped)} saw outside, in {escapes} mounts",
        file=sys.stderr,
    )
    assert escaped == [], (
        f"{len(escaped)} of {len(ran)} victims saw outside the allowed directory, in {escapes} "
        f"of {mounts(seen)} mounts: {sorted(escaped[0].names())}"
    )
    assert all(len(s.listed) == MOUNTS_PER_VICTIM for s in ran), "a mount listed nothing"
    assert mounts(seen) >= MOUNTS
    # The attacker was swapping throughout: some victims found the link and were refused.
    assert refused, "no victim ever found the link: the attack did not run"
    assert all(LINK_REFUSED in error for error in refused), refused[:3]
    assert all(s.result.succeeded for s in seen if s.result.error is None)
    assert site.leftovers() == ([], [])


def mounted(seen: Seen) -> bool:
    return seen.result.error is None


def mounts(seen: list[Seen]) -> int:
    return MOUNTS_PER_VICTIM * sum(map(mounted, seen))


def test_a_link_on_the_way_is_refused_even_one_that_stays_inside(
    site: Site, tmp_path: Path
) -> None:
    real = site.allowed / "real"
    (real / "deeper").mkdir(parents=True)
    (site.allowed / "to-root").symlink_to("/")
    (site.allowed / "to-outside").symlink_to(site.outside)
    (site.allowed / "to-beside").symlink_to(f"../{site.outside.name}")
    (site.allowed / "to-inside").symlink_to(real)
    runner = site.runner()
    for index, volume in enumerate(
        [
            site.allowed / "to-root",
            site.allowed / "to-root" / "etc",
            site.allowed / "to-outside",
            site.allowed / "to-beside",
            site.allowed / "to-inside",
            site.allowed / "to-inside" / "deeper",
        ]
    ):
        seen = mount(runner, tmp_path / "work" / str(index), str(volume))
        assert seen.result.error is not None, (volume, seen.names())
        assert LINK_REFUSED in seen.result.error, seen.result.error
        # A deploy refuses it as well (the check a commit goes through).
        with pytest.raises(Exception, match=LINK_REFUSED):
            check_volumes([f"{volume}:/mnt"], [site.allowed])
    assert site.leftovers() == ([], [])


def test_a_nested_allowed_directory_swapped_for_a_link_leads_nowhere(
    site: Site, tmp_path: Path
) -> None:
    # Both allowed; a task that may write in the outer one made the inner one a link.
    inner = site.allowed / "inner"
    inner.symlink_to("/")
    made = Path("/tmp") / f"headwater-test-{uuid.uuid4().hex}"  # the engine makes missing dirs
    runner = site.runner(site.allowed, inner)
    for index, volume in enumerate([inner, inner / "etc", inner / made.relative_to("/")]):
        seen = mount(runner, tmp_path / "work" / str(index), str(volume))
        assert seen.result.error is not None, (volume, seen.names())
        assert f"{inner} {LINK_REFUSED}" in seen.result.error, seen.result.error
    assert not made.exists()
    # The same, with the inner one a real directory again: mounted, and only it.
    inner.unlink()
    shutil.copytree(site.sub, inner)
    seen = mount(runner, tmp_path / "work" / "real", str(inner))
    assert seen.names() == {INSIDE}


def test_volumes_are_refused_where_the_engine_cannot_see_the_opened_directory(
    site: Site,
) -> None:
    """In a PID namespace of its own (Headwater in a container, say), the engine's
    `/proc/<pid>` is some other process: no volume is mounted then."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to start Headwater in a PID namespace of its own")
    script = textwrap.dedent(
        f"""
        import sys, tempfile, threading
        from pathlib import Path
        from headwater.runners.base import ContainerOptions, RunSpec
        from headwater.runners.docker import DockerRunner
        from headwater.runners.docker_settings import DockerSettings
        runner = DockerRunner(DockerSettings(owner={site.owner!r},
                                             allowed_volumes=(Path({str(site.allowed)!r}),)))
        spec = RunSpec(command=["ls", "/mnt"], workdir=Path(tempfile.mkdtemp()),
                       image={BUSYBOX!r},
                       container=ContainerOptions(volumes=({str(site.sub)!r} + ":/mnt",)))
        print(runner.run(spec, lambda *line: print(*line), threading.Event()).error)
        """
    )
    unshare = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", script]
    done = subprocess.run(unshare, capture_output=True, text=True, timeout=120, check=True)
    assert "volumes need Headwater in the host's PID namespace" in done.stdout, done
    assert site.leftovers() == ([], [])
