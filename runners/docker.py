"""The Docker runner: a task's command in a fresh container on a Docker engine.

One container per run, through the Engine API (the `docker` SDK's low-level client):

1. the image is looked up or pulled by the pull policy (ALWAYS, IF_NOT_PRESENT, NEVER);
2. the container is created with the command, the task's variables only (never the
   worker's environment), the limits, the network mode and the volumes the deployment
   allows (through engine volumes over directories opened here, which no container can
   redirect: `headwater.runners.docker_volumes`), `--init` (so TERM reaches the command,
   which is not PID 1), and labels naming the execution, task run and attempt, plus the
   deployment's `headwater.owner`;
3. the working directory appears in the container at the path it has on the host (so
   `WORKING_DIR` is right in both runners). By default (`files="copy"`) it is copied in
   through the API before the start, when it holds anything, and copied back after the
   end when the run spec says its files are used (`keep_files`: output files, a shared
   WorkingDirectory): a bind mount breaks when Headwater itself runs in a container, and
   leaves files owned by the container's user (root) in the data directory. Each copy
   costs the engine a mount of the container's filesystem (40 ms idle, several times
   that on a busy machine), and so does the engine's diff, so nothing is copied that is
   not needed. `files="mount"` bind-mounts the directory instead;
4. the output is attached before the start and read as it comes (the engine's stream
   splits lines and `::{...}::` markers anywhere: `LineSplitter` reassembles them);
5. at the end the working directory is copied back (output files) and the container
   removed, then the run's engine volumes, whatever happened: timeout, kill and errors
   included.

A daemon killed meanwhile leaves its containers running; `remove_orphans` (called when
an engine starts) removes those whose task run attempt is no longer running, and the
engine volumes of processes that are gone.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headwater.runners import dockersdk as sdk
from headwater.runners.base import LineSink, RunResult, RunSpec, Stream
from headwater.runners.docker_settings import ContainerRefused as ContainerRefused
from headwater.runners.docker_settings import DockerSettings
from headwater.runners.docker_volumes import HostVolumes, remove_leftover_volumes
from headwater.runners.process import LineSplitter

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02
"""How often a waiting run looks at its cancel event and deadline."""
API_TIMEOUT_SECONDS = 60.0
"""Timeout of one Engine API call (pulls and output streams are not bound by it)."""
OOM_EXIT_CODE = 137
"""128 + SIGKILL: what the kernel's OOM killer leaves when `OOMKilled` is not set."""

LABEL_OWNER = "headwater.owner"
LABEL_EXECUTION = "headwater.execution"
LABEL_TASK_RUN = "headwater.taskrun"
LABEL_ATTEMPT = "headwater.attempt"

IsLive = Callable[[Mapping[str, str]], bool]
"""Whether the attempt a container's labels name is still running (keep the container)."""


class DockerRunner:
    """Runs a `RunSpec` in a container; see the module docstring."""

    def __init__(self, settings: DockerSettings | None = None) -> None:
        self.settings = settings or DockerSettings()
        self._slots = threading.BoundedSemaphore(max(1, self.settings.max_containers))
        self._api: docker.APIClient | None = None
        self._api_lock = threading.Lock()

    # -- the engine ----------------------------------------------------------------------
    def api(self) -> docker.APIClient:
        """The Engine API client, made on first use (a daemon without Docker still starts)."""
        with self._api_lock:
            if self._api is None:
                self._api = _connect(self.settings)
            return self._api

    def where(self) -> str:
        return self.settings.host or os.environ.get("DOCKER_HOST") or "the default Docker socket"

    # -- one run -------------------------------------------------------------------------
    def run(
        self,
        spec: RunSpec,
        on_line: LineSink,
        cancel: threading.Event,
        on_start: Callable[[int], None] | None = None,
    ) -> RunResult:
        """Run `spec` in a container (see `headwater.runners.base.Runner`).

        `on_start` is never called: a container has no process group here; its labels
        are what a restarted daemon goes by.
        """
        started = time.monotonic()
        if not self._take_slot(cancel):
            return RunResult(exit_code=None, duration=_since(started), killed=True)
        try:
            return self._run(spec, on_line, cancel, started)
        finally:
            self._slots.release()

    def _take_slot(self, cancel: threading.Event) -> bool:
        if self._slots.acquire(blocking=False):
            return True
        log.info("all %d container slots are taken; waiting", self.settings.max_containers)
        while not cancel.is_set():
            if self._slots.acquire(timeout=POLL_SECONDS * 10):
                return True
        return False

    def _run(
        self, spec: RunSpec, on_line: LineSink, cancel: threading.Event, started: float
    ) -> RunResult:
        if cancel.is_set():
            return RunResult(exit_code=None, duration=0.0, killed=True)
        # The run's engine volumes outlive the container: removed after it, at the end.
        with contextlib.ExitStack() as volumes_open:
            try:
                api = self.api()
                labels = {**spec.labels, LABEL_OWNER: self.settings.owner}
                volumes = volumes_open.enter_context(HostVolumes(api, self.settings, labels))
                config = self._config(spec, volumes)
                container = _create(api, config, spec.container.pull_policy)
            except (ContainerRefused, _ImageError) as exc:
                return RunResult(exit_code=None, duration=_since(started), error=str(exc))
            except sdk.failures() as exc:
                error = f"the Docker engine at {self.where()} failed: {_reason(exc)}"
                return RunResult(exit_code=None, duration=_since(started), error=error)
            watch = _Container(api, container, spec, self.settings)
            try:
                return watch.run(on_line, cancel, started)
            finally:
                watch.remove()

    def _config(self, spec: RunSpec, volumes: HostVolumes) -> dict[str, Any]:
        """The arguments of `create_container`; ContainerRefused for what is not allowed."""
        options = spec.container
        image = spec.image or self.settings.images.get(spec.language or "")
        if not image:
            raise ContainerRefused(f"no container image given for a {spec.language} task")
        limits = spec.limits
        swap = limits.memory_swap_bytes or limits.memory_bytes
        network_mode = self.network_mode(options.network_mode)  # refused before volumes are made
        binds = volumes.binds(options.volumes)
        if self.settings.files == "mount":
            binds.append(f"{spec.workdir}:{spec.workdir}:rw")
        host_config = self.api().create_host_config(
            binds=binds,
            network_mode=network_mode,
            mem_limit=limits.memory_bytes,
            memswap_limit=swap if limits.memory_bytes else None,
            nano_cpus=int(limits.cpus * 1e9) if limits.cpus else None,
            init=True,
        )
        entrypoint, command = _split_entrypoint(options.entrypoint, spec.command)
        return {
            "image": image,
            "command": command,
            "entrypoint": entrypoint,
            "environment": dict(spec.env),
            "working_dir": str(spec.workdir),
            "user": options.user or "",
            "labels": {**spec.labels, LABEL_OWNER: self.settings.owner},
            "host_config": host_config,
            "use_config_proxy": False,
            "stdin_open": False,
            "tty": False,
        }

    def network_mode(self, wanted: str | None) -> str:
        """The network mode of a container that asks for `wanted`; ContainerRefused says
        why a mode is not allowed here."""
        if wanted == "host" or (wanted or "").startswith("container:"):
            raise ContainerRefused(
                f"networkMode {wanted}: refused, it shares another network namespace and "
                "would reach services listening on its loopback (the Headwater API, the "
                "database); use bridge, none or a named network"
            )
        if not self.settings.network:
            if wanted not in (None, "none"):
                raise ContainerRefused(
                    f"networkMode {wanted}: this deployment does not let containers use the "
                    "network (HEADWATER_DOCKER_NETWORK=false); use networkMode none"
                )
            return "none"
        return wanted or "bridge"

    # -- leftovers -----------------------------------------------------------------------
    def remove_orphans(self, is_live: IsLive) -> int:
        """Remove this deployment's containers whose attempt is no longer running, then
        its engine volumes whose process is gone.

        Returns how many containers were removed. Containers and volumes of other
        deployments on the same engine (another `headwater.owner`) are never touched.
        """
        api = self.api()
        found = api.containers(all=True, filters={"label": f"{LABEL_OWNER}={self.settings.owner}"})
        removed = 0
        for container in found:
            labels = container.get("Labels") or {}
            if is_live(labels):
                continue
            log.warning(
                "removing container %s left by task run %s (attempt %s), which no longer runs",
                container["Id"][:12],
                labels.get(LABEL_TASK_RUN),
                labels.get(LABEL_ATTEMPT),
            )
            with contextlib.suppress(sdk.not_found()):
                api.remove_container(container["Id"], force=True, v=True)
                removed += 1
        volumes = remove_leftover_volumes(api, f"{LABEL_OWNER}={self.settings.owner}")
        if volumes:
            log.warning("removed %d engine volume(s) left by a stopped Headwater", volumes)
        return removed


def _split_entrypoint(
    entrypoint: tuple[str, ...] | None, command: list[str]
) -> tuple[list[str], list[str]]:
    """The container's entrypoint and command.

    No entrypoint clears the image's own (`[""]`), so the command runs as given. An
    entrypoint that the command already begins with (`entryPoint: [/bin/sh, -c]` beside
    the default interpreter `/bin/sh -c`) is not repeated: `sh -c sh -c script` would
    run a shell that reads nothing and succeeds without running the script.
    """
    if not entrypoint:
        return [""], command
    size = len(entrypoint)
    if tuple(command[:size]) == entrypoint:
        return list(entrypoint), command[size:]
    return list(entrypoint), command


# -- the engine connection and images -------------------------------------------------


def _connect(settings: DockerSettings) -> docker.APIClient:
    pool = max(10, 2 * settings.max_containers + 2)  # an output stream holds a connection
    kwargs: dict[str, Any] = (
        {"base_url": settings.host} if settings.host else sdk.options_from_env()
    )
    return sdk.client(
        version="auto", timeout=int(API_TIMEOUT_SECONDS), max_pool_size=pool, **kwargs
    )


class _ImageError(Exception):
    """The image cannot be found or pulled: the run fails with this reason."""


def _create(api: docker.APIClient, config: dict[str, Any], policy: str) -> str:
    """Create the container, pulling its image as the pull policy says; its id.

    Only ALWAYS pulls first; otherwise the create itself says whether the image is
    there (one call fewer per run than asking first).
    """
    image = config["image"]
    if policy == "ALWAYS":
        _pull(api, image)
    try:
        return str(api.create_container(**config)["Id"])
    except sdk.image_not_found():
        if policy != "IF_NOT_PRESENT":
            raise _ImageError(
                f"image {image!r} is not on the Docker engine and pullPolicy is {policy}: "
                "load or build it there first"
            ) from None
    _pull(api, image)
    return str(api.create_container(**config)["Id"])


def _pull(api: docker.APIClient, image: str) -> None:
    """Pull `image`, or raise _ImageError saying why not."""
    repository, tag = sdk.repository_and_tag(image)
    log.info("pulling image %s", image)
    try:
        # Without a tag the SDK would pull every tag of the repository.
        for event in api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if "error" in event:
                raise _ImageError(f"cannot pull image {image!r}: {event['error']}")
    except sdk.failures() as exc:
        raise _ImageError(f"cannot pull image {image!r}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """The engine's own explanation of an error, without the SDK's HTTP wrapping."""
    if isinstance(exc, sdk.api_error()) and getattr(exc, "explanation", None):
        return str(exc.explanation)  # type: ignore[attr-defined]
    return str(exc) or type(exc).__name__


# -- one container --------------------------------------------------------------------


class _Container:
    """One created container: files in, start, output, stop, files out, removal."""

    def __init__(
        self, api: docker.APIClient, container: str, spec: RunSpec, settings: DockerSettings
    ) -> None:
        self.api = api
        self.id = container
        self.spec = spec
        self.grace = settings.kill_grace
        self.copy = settings.files == "copy"
        self.stop: str | None = None
        self.output_done = threading.Event()
        self.output_error: BaseException | None = None

    def run(self, on_line: LineSink, cancel: threading.Event, started: float) -> RunResult:
        try:
            # The engine makes a missing working directory itself (root's, 0755): copy an
            # empty one only when another user must be able to write in it.
            if self.copy and (self.spec.container.user or any(self.spec.workdir.iterdir())):
                archive = _archive(self.spec.workdir, self.spec.container.user)
                self.api.put_archive(self.id, "/", archive)
            # Attached before the start, so the stream has every line from the first.
            # `logs=True` would also replay the engine's log of the container, and on a
            # busy engine lines printed while it switches from replay to stream came twice.
            stream = self.api.attach(self.id, stream=True, logs=False, demux=True)
            self.api.start(self.id)
        except sdk.failures() as exc:
            error = f"cannot start the container: {_reason(exc)}"
            return RunResult(exit_code=None, duration=_since(started), error=error)
        reader = threading.Thread(
            target=self._read, args=(stream, on_line), name=f"docker-{self.id[:12]}", daemon=True
        )
        reader.start()
        deadline = None if self.spec.timeout is None else time.monotonic() + self.spec.timeout
        self._wait(cancel, deadline)
        reader.join()
        if self.output_error is not None:
            raise self.output_error
        return self._result(started)

    def _read(self, stream: Iterator[tuple[bytes | None, bytes | None]], on_line: LineSink) -> None:
        splitters: dict[Stream, LineSplitter] = {
            "stdout": LineSplitter("stdout", on_line),
            "stderr": LineSplitter("stderr", on_line),
        }
        try:
            for out, err in stream:
                if out:
                    splitters["stdout"].feed(out)
                if err:
                    splitters["stderr"].feed(err)
            for splitter in splitters.values():
                splitter.close()
        except BaseException as exc:  # passed on by the waiting thread, after removal
            self.output_error = exc
            with contextlib.suppress(*sdk.failures()):
                self.api.kill(self.id)
        finally:
            self.output_done.set()

    def _wait(self, cancel: threading.Event, deadline: float | None) -> None:
        """Until the output ends; stop the container on cancel or at the deadline."""
        while not self.output_done.wait(POLL_SECONDS):
            if self.stop is not None:
                continue
            if cancel.is_set():
                self._stop("cancel")
            elif deadline is not None and time.monotonic() >= deadline:
                self._stop("timeout")

    def _stop(self, reason: str) -> None:
        log.info("stopping container %s (%s)", self.id[:12], reason)
        self.stop = reason
        # The engine sends TERM, then KILL after the grace; in a thread, so a cancel
        # that comes during a timeout's grace is not held up (it kills at once).
        threading.Thread(target=self._stop_container, daemon=True).start()

    def _stop_container(self) -> None:
        with contextlib.suppress(*sdk.failures()):
            self.api.stop(self.id, timeout=max(0, round(self.grace)))

    def _result(self, started: float) -> RunResult:
        try:
            code = self.api.wait(self.id)["StatusCode"]
            state = self.api.inspect_container(self.id)["State"]
            if self.copy and self.spec.keep_files and self.stop != "cancel":
                self._copy_out()
        except sdk.failures(tarfile.TarError, OSError) as exc:
            error = f"cannot finish the container's run: {_reason(exc)}"
            return RunResult(exit_code=None, duration=_since(started), error=error)
        oom = bool(state.get("OOMKilled")) or (
            code == OOM_EXIT_CODE
            and self.stop is None
            and self.spec.limits.memory_bytes is not None
        )
        return RunResult(
            exit_code=code,
            duration=_since(started),
            timed_out=self.stop == "timeout",
            killed=self.stop == "cancel",
            oom_killed=oom,
        )

    def _copy_out(self) -> None:
        """Bring the working directory back (what the command wrote in it)."""
        chunks, _stat = self.api.get_archive(self.id, str(self.spec.workdir))
        with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as archive:
            archive.extractall(self.spec.workdir.parent, filter=_safe_member)

    def remove(self) -> None:
        try:
            self.api.remove_container(self.id, force=True, v=True)
        except sdk.not_found():
            pass
        except sdk.failures():
            log.warning("cannot remove container %s", self.id[:12], exc_info=True)


def _archive(workdir: Path, user: str | None) -> bytes:
    """A tar of `workdir` at its own absolute path, for `put_archive` at `/`.

    With a `user`, the container's user must be able to write there: a numeric
    `uid[:gid]` gets the files; a user name gets directories anyone may write.
    """
    owner = _numeric_owner(user)
    buffer = io.BytesIO()
    # Only the directory itself: the engine makes missing parents (root, 0755), while
    # entries for existing ones such as /tmp would change their owner and mode.
    with tarfile.open(fileobj=buffer, mode="w") as archive:

        def adjust(info: tarfile.TarInfo) -> tarfile.TarInfo:
            if owner is not None:
                info.uid, info.gid, info.uname, info.gname = *owner, "", ""
            elif user and info.isdir():
                info.mode |= 0o777
            elif user:
                info.mode |= 0o666
            return info

        archive.add(workdir, arcname=str(workdir).lstrip("/"), filter=adjust)
    return buffer.getvalue()


def _numeric_owner(user: str | None) -> tuple[int, int] | None:
    if not user:
        return None
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        return None
    return int(uid), int(gid or uid)


def _safe_member(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
    """tarfile's `data` filter (nothing outside the directory, no devices, no owners: the
    files are ours); what it refuses, such as a link to an absolute path, is left out."""
    try:
        return tarfile.data_filter(member, path)
    except tarfile.FilterError as exc:
        log.warning("not copying %s out of the container: %s", member.name, exc)
        return None


class _ChunkReader(io.RawIOBase):
    """A file over the chunks of an archive stream, for tarfile's streaming mode."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = chunk
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size


def _since(started: float) -> float:
    return time.monotonic() - started
