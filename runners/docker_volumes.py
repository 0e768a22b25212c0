"""A task's `volumes` in its container, mounted without a race (docs/runners.md, "Volumes").

Checking a host path and then handing it to the Docker engine races: the engine resolves
the path again when it mounts, and a container that may write under an allowed directory
can meanwhile swap a directory on the way for a symbolic link to `/`. So the engine is
never given a path that a container could change:

1. the path is checked as text: absolute, no `..`, under a directory of
   HEADWATER_DOCKER_VOLUMES;
2. Headwater opens it one name at a time from `/` (`O_NOFOLLOW`), refusing a symbolic
   link anywhere on the way and anything but a directory, and keeps the descriptor;
3. the run gets an engine volume of its own (driver `local`, a bind of
   `device=/proc/<pid>/fd/<n>`): dockerd mounts it in the host's mount namespace, where the
   kernel follows that link to the very directory opened, whatever its path leads to by
   then; the container mounts the volume (`nocopy`: the engine copies no image files in);
4. after the container is removed, the volume is removed, then the descriptor closed.

Docker 26 (API 1.45) can itself mount a volume's subpath without a race; Debian's engine
(20.10, API 1.41) cannot, and the descriptor works on both. It needs the engine on this
machine, in this PID namespace (its `/proc/<pid>` must be this process): otherwise
volumes are refused, saying why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING

from headwater.runners import dockersdk as sdk
from headwater.runners.docker_settings import ContainerRefused, DockerSettings

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

OPEN_DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""How each name on a volume's path is opened: a directory, never through a symbolic link."""
NEW_DIRECTORY_MODE = 0o755
"""Mode of a missing directory below an allowed one, made for a run (as `docker -v` does)."""
PROC_PID_INIT_INO = 0xEFFFFFFC
"""Inode of the first PID namespace (the kernel's PROC_PID_INIT_INO): the one dockerd sees."""
VOLUME_PREFIX = "headwater-"
"""Start of the name of a run's engine volume (the rest is random)."""
LABEL_PID = "headwater.pid"
"""Label of a run's engine volume: the process whose descriptor it mounts."""
MODES = ("ro", "rw")


@dataclass(frozen=True)
class Volume:
    """One of a task's `volumes`, checked as text: `host` lies under the allowed `root`."""

    text: str
    host: PurePosixPath
    target: str
    mode: str
    root: PurePosixPath


def parse_volumes(volumes: Iterable[str], allowed: Iterable[Path]) -> list[Volume]:
    """The `volumes` (`host:container[:ro|rw]`), each absolute, without `..`, and under a
    directory of `allowed`; ContainerRefused names the volume at fault."""
    roots = [_normal(str(root)) for root in allowed]
    return [_parse(volume, roots) for volume in volumes]


def _parse(volume: str, roots: list[PurePosixPath]) -> Volume:
    parts = volume.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ContainerRefused(f"volume {volume!r}: give it as /host/path:/container/path[:ro]")
    host, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if not host.startswith("/") or not target.startswith("/"):
        raise ContainerRefused(f"volume {volume!r}: both paths must be absolute")
    if mode not in MODES:
        raise ContainerRefused(f"volume {volume!r}: the mode must be ro or rw, not {mode!r}")
    if ".." in host.split("/"):
        raise ContainerRefused(f"volume {volume!r}: {host} goes up with '..'; write it without")
    path = _normal(host)
    root = next((root for root in roots if path.is_relative_to(root)), None)
    if root is None:
        where = ", ".join(map(str, roots)) if roots else "none"
        raise ContainerRefused(
            f"volume {volume!r}: {host} is not under a directory this deployment lets "
            f"containers mount (HEADWATER_DOCKER_VOLUMES: {where})"
        )
    return Volume(volume, path, target, mode, root)


def _normal(path: str) -> PurePosixPath:
    """`path` without `.`, doubled or trailing slashes (also a leading `//`, which POSIX
    leaves to the system); `..` is never passed here."""
    return PurePosixPath("/", *PurePosixPath(path).parts[1:])


def check_volumes(volumes: Iterable[str], allowed: Iterable[Path]) -> list[Volume]:
    """The deploy-time check: `parse_volumes`, and a symbolic link or a file on the way
    found now is refused too. A path missing now passes (a run makes it); a run checks
    everything again, since the files may change in between."""
    found = parse_volumes(volumes, allowed)
    for volume in found:
        with contextlib.suppress(OSError):  # missing or unreadable now: the run decides
            os.close(_open(volume, create=False))
    return found


def open_volume(volume: Volume) -> int:
    """A descriptor (O_PATH) of the volume's directory, opened without following a symbolic
    link; missing directories below the allowed one are made. ContainerRefused says why not."""
    try:
        return _open(volume, create=True)
    except FileNotFoundError as exc:
        raise ContainerRefused(f"volume {volume.text!r}: {exc.filename} does not exist") from None
    except OSError as exc:
        raise ContainerRefused(
            f"volume {volume.text!r}: cannot open {exc.filename or volume.host}: {exc.strerror}"
        ) from None


def _open(volume: Volume, create: bool) -> int:
    fd = os.open("/", OPEN_DIRECTORY)
    here = PurePosixPath("/")
    try:
        for name in volume.host.parts[1:]:
            here = here / name
            below_root = here != volume.root and here.is_relative_to(volume.root)
            try:
                inner = _open_name(fd, name, here, volume, create and below_root)
            except OSError as exc:
                exc.filename = str(here)  # the whole path, for the error
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_name(parent: int, name: str, here: PurePosixPath, volume: Volume, create: bool) -> int:
    """`name` in the directory `parent`, which is `here`'s parent."""
    try:
        return os.open(name, OPEN_DIRECTORY, dir_fd=parent)
    except NotADirectoryError:
        raise ContainerRefused(f"volume {volume.text!r}: {here} {_why_not(parent, name)}") from None
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):  # made meanwhile: opened below like any other
        os.mkdir(name, NEW_DIRECTORY_MODE, dir_fd=parent)
    return _open_name(parent, name, here, volume, create=False)


def _why_not(parent: int, name: str) -> str:
    """Why `name`, which could not be opened as a directory, cannot be mounted (the error)."""
    link = (
        "a volume's path may not go through one, since a container could change where it "
        "leads (write the path it leads to)"
    )
    try:
        mode = os.lstat(name, dir_fd=parent).st_mode
    except OSError:
        mode = stat.S_IFDIR
    if stat.S_ISLNK(mode):
        return f"is a symbolic link: {link}"
    if stat.S_ISDIR(mode):  # it changes under us: something swaps it
        return f"is a symbolic link or not a directory, changing while it is opened: {link}"
    return "is not a directory: only directories can be mounted"


class HostVolumes:
    """The engine volumes of one run, over the directories it opened (module docstring).

    Keep it open for the container's whole life: the engine mounts a volume again whenever
    it needs it (at the start, for each copy in or out), through the descriptor.
    """

    def __init__(
        self, api: docker.APIClient, settings: DockerSettings, labels: Mapping[str, str]
    ) -> None:
        self.api = api
        self.settings = settings
        self.labels = {**labels, LABEL_PID: str(os.getpid())}
        self._fds: list[int] = []
        self._names: list[str] = []

    def binds(self, volumes: Iterable[str]) -> list[str]:
        """The container's binds (`volume:/target:mode,nocopy`) of the task's `volumes`;
        ContainerRefused names the volume at fault."""
        found = parse_volumes(volumes, self.settings.allowed_volumes)
        if found:
            self._check_engine(found[0])
        # Every path is opened before the engine is asked for anything: a refused run
        # makes no engine volume, and the paths are taken together.
        first = len(self._fds)
        for volume in found:
            self._fds.append(open_volume(volume))
        opened = self._fds[first:]
        return [self._bind(volume, fd) for volume, fd in zip(found, opened, strict=True)]

    def _check_engine(self, volume: Volume) -> None:
        engine = self.settings.host or os.environ.get("DOCKER_HOST") or ""
        if engine and not engine.startswith("unix://"):
            raise ContainerRefused(
                f"volume {volume.text!r}: volumes need the Docker engine on this machine, "
                f"reached by its unix socket, not {engine}"
            )
        if not in_first_pid_namespace():
            raise ContainerRefused(
                f"volume {volume.text!r}: volumes need Headwater in the host's PID namespace, "
                "where the Docker engine sees the directories it opens; it runs in one of its "
                "own (in a container?)"
            )

    def _bind(self, volume: Volume, fd: int) -> str:
        name = f"{VOLUME_PREFIX}{uuid.uuid4().hex}"
        device = f"/proc/{os.getpid()}/fd/{fd}"
        options = {"type": "none", "o": "rbind", "device": device}
        self.api.create_volume(name, driver="local", driver_opts=options, labels=self.labels)
        self._names.append(name)
        return f"{name}:{volume.target}:{volume.mode},nocopy"

    def __enter__(self) -> HostVolumes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Remove the engine volumes, then close their descriptors. A descriptor whose volume
        could not be removed stays open: its number must not name another file meanwhile."""
        for index, fd in enumerate(self._fds):
            made = index < len(self._names)  # the engine may have refused the last one
            if not made or self._gone(self._names[index]):
                os.close(fd)
        self._fds, self._names = [], []

    def _gone(self, name: str) -> bool:
        try:
            self.api.remove_volume(name)
        except sdk.not_found():
            pass
        except sdk.failures():
            log.warning("cannot remove engine volume %s", name, exc_info=True)
            return False
        return True


def in_first_pid_namespace() -> bool:
    """Whether this process sees the host's processes (then the engine's `/proc/<pid>` is
    this process, as on a machine where both run without containers)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino == PROC_PID_INIT_INO
    except OSError:
        return False


def remove_leftover_volumes(api: docker.APIClient, label: str) -> int:
    """Remove the engine volumes with `label` whose process is gone (a killed daemon's);
    how many. Those of live processes are in use or about to be."""
    found = api.volumes(filters={"label": label}).get("Volumes") or []
    removed = 0
    for volume in found:
        if _alive((volume.get("Labels") or {}).get(LABEL_PID, "")):
            continue
        with contextlib.suppress(*sdk.failures()):
            api.remove_volume(volume["Name"])
            removed += 1
    return removed


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        pass
    return True
