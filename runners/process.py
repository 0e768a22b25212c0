"""The process runner: a task's command as a local child process, its lines streamed.

Every run gets its own session and process group (`start_new_session`), so a timeout,
a kill, or the end of the main process can signal everything the command started,
and a restarted daemon can end a group left over from a killed one (by the group id
`on_start` reported). The child's environment is ours without Headwater's settings
and database URLs (`child_environment`), plus a marker of the run.

Nothing a run starts outlives it: when its main process has ended (by itself, on a
timeout, on a kill), whatever it left running, in its group or out of it (`setsid`, a
double fork), gets TERM, and KILL after the grace period (`headwater.runners.leftovers`
finds them); `RunResult.leftovers` says how many there were. With a `TaskUser` the
command runs as that user, and its working directory is given to it first.

One thread per run, no helper threads: the calling thread waits on both pipes and,
on Linux, a pidfd of the main process with a `selectors` poll, so the happy path
never sleeps (elsewhere the exit is polled, from 0.5 ms up). A run stops reading
when its main process has exited and its process group is gone, even if a process
that left the group still holds the pipes.

Exit codes: the command's own code when it exited (also when it exited by itself
after a timeout's or kill's TERM); None when a signal ended it, as `RunResult` says.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Literal

from headwater.runners.base import LineSink, RunResult, RunSpec, Stream
from headwater.runners.leftovers import MARKER_VARIABLE, Leftovers, become_subreaper, new_marker
from headwater.runners.users import TASK_UMASK, TaskUser

log = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 5.0
"""Seconds between TERM and KILL when a process group is stopped."""
MAX_LINE_BYTES = 64 * 1024
"""Longest line delivered whole; longer lines arrive in pieces of at most this many bytes."""
POLL_SECONDS = 0.02
"""How often a waiting run looks at what cannot wake a select: its cancel event, a group."""
KILL_WAIT_SECONDS = 1.0
"""How long to wait for a KILLed group to vanish before giving up on it (and logging)."""
DRAIN_SECONDS = 0.1
"""How long to read pipes after the group is gone: a process outside it may hold them."""

_READ_BYTES = 64 * 1024
_DATABASE_URL = re.compile(r"(?i)\b(?:postgres(?:ql)?|sqlite)(?:\+\w+)?://")
_PRIVATE_PREFIXES = ("HEADWATER_", "SECRET_", "PG")  # settings; secrets; libpq connections

StopReason = Literal["timeout", "cancel"]


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a task's command: ours, scrubbed, with `extra` on top.

    Removed: every `HEADWATER_*` variable, every `SECRET_*` variable (secrets reach a
    task only through `secret('NAME')`, masked), `DATABASE_URL` and `*_DATABASE_URL`,
    every `PG*` variable (libpq reads PGPASSWORD and its kin), and any variable whose
    value holds a PostgreSQL or SQLite URL. `extra` (the task's own variables) may set any
    of them again on purpose.
    """
    env = {name: value for name, value in os.environ.items() if not _is_private(name, value)}
    env.update(extra)
    return env


def _is_private(name: str, value: str) -> bool:
    upper = name.upper()
    return (
        upper.startswith(_PRIVATE_PREFIXES)
        or upper == "DATABASE_URL"
        or upper.endswith("_DATABASE_URL")
        or ("://" in value and _DATABASE_URL.search(value) is not None)  # the test is cheap
    )


def process_group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is still running.

    Zombies (dead, waiting for their parent to collect them) do not count: an orphan
    is collected by PID 1, which in some containers takes seconds or never happens.
    """
    _check_pgid(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a member changed user (a setuid program); it still runs
    return _has_live_member(pgid)


def _has_live_member(pgid: int) -> bool:
    """Look through /proc for a member that is not a zombie (True where /proc is missing)."""
    try:
        entries = os.scandir("/proc")
    except OSError:
        return True
    with entries:
        return any(entry.name.isdigit() and _live_in_group(entry.name, pgid) for entry in entries)


def _live_in_group(pid: str, pgid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return False  # gone meanwhile
    # The command name in parentheses may hold spaces and parentheses: split after it.
    state, _ppid, group = stat[stat.rfind(b")") + 2 :].split(b" ", 3)[:3]
    return int(group) == pgid and state not in (b"Z", b"X")


def kill_process_group(pgid: int, grace: float = KILL_GRACE_SECONDS) -> bool:
    """End a process group (one a previous daemon left): TERM, then KILL after `grace`.

    Returns whether any process of the group was alive. The caller's own group is
    never signalled (a restarted daemon can get the number a recorded group had), nor
    0 or 1 (what a broken record might hold: the caller's group, init's).
    """
    if pgid <= 1 or pgid == os.getpgrp():
        log.warning("not ending process group %d: not one a run started", pgid)
        return False
    if not process_group_alive(pgid):
        return False
    _signal_group(pgid, signal.SIGTERM)
    if not _wait_group_gone(pgid, grace):
        _signal_group(pgid, signal.SIGKILL)
        if not _wait_group_gone(pgid, KILL_WAIT_SECONDS):
            log.warning("process group %d survived SIGKILL", pgid)
    return True


def _wait_group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while process_group_alive(pgid):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(POLL_SECONDS, left))
    return True


def _check_pgid(pgid: int) -> None:
    # killpg(0, …) means the caller's own group and 1 is init's: never a run's group.
    if pgid <= 1:
        raise ValueError(f"{pgid} is not the process group of a run")


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        log.warning("no permission to signal process group %d", pgid)


def _collect_group(pgid: int) -> None:
    """Collect zombies of `pgid` that are our own children.

    Orphans become our children when this process is PID 1 (a container without an
    init) or a subreaper; nobody else would ever collect them.
    """
    try:
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


class ProcessRunner:
    """Runs a `RunSpec` as a local process group; see the module docstring."""

    def __init__(
        self, kill_grace: float = KILL_GRACE_SECONDS, task_user: TaskUser | None = None
    ) -> None:
        """`task_user`: run every command as that user (see `headwater.runners.users`:
        the caller checks beforehand that this process may switch to it)."""
        self.kill_grace = kill_grace
        self.task_user = task_user
        become_subreaper()  # for the whole process: orphans of runs stay below it

    def run(
        self,
        spec: RunSpec,
        on_line: LineSink,
        cancel: threading.Event,
        on_start: Callable[[int], None] | None = None,
    ) -> RunResult:
        """Run `spec` to its end (see `headwater.runners.base.Runner`); never raises for
        a command that cannot start, but passes on what `on_line`/`on_start` raise (after
        ending the process group)."""
        started = time.monotonic()
        if cancel.is_set():
            return RunResult(exit_code=None, duration=0.0, killed=True)
        marker = new_marker()
        try:
            proc = _start(spec, marker, self.task_user)
        except (OSError, ValueError, TypeError, IndexError) as exc:
            return RunResult(
                exit_code=None, duration=_since(started), error=_start_error(spec, exc)
            )
        deadline = None if spec.timeout is None else started + spec.timeout
        leftovers = Leftovers(marker, proc.pid)
        watch = _Watch(proc, on_line, cancel, self.kill_grace, deadline, leftovers)
        try:
            if on_start is not None:
                on_start(proc.pid)
            watch.wait()
        except BaseException:
            watch.abort()
            raise
        finally:
            watch.close()
        return watch.result(_since(started))


def _start(spec: RunSpec, marker: str, user: TaskUser | None) -> subprocess.Popen[bytes]:
    # start_new_session: the child leads a new group (pgid == pid) that we can signal
    # whole; unlike preexec_fn it is safe with threads and keeps the fast vfork path
    # (which a user switch gives up: Python forks then).
    named = user.environment() if user is not None else {}
    env = child_environment({**named, **spec.env, MARKER_VARIABLE: marker})
    if user is not None:
        user.give(spec.workdir)
    return subprocess.Popen(
        spec.command,
        cwd=spec.workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        bufsize=0,
        user=None if user is None else user.uid,
        group=None if user is None else user.gid,
        extra_groups=None if user is None else list(user.groups),
        umask=-1 if user is None else TASK_UMASK,  # -1: the runner's own
    )


def _since(started: float) -> float:
    return time.monotonic() - started


def _start_error(spec: RunSpec, exc: Exception) -> str:
    """Say why the command could not start, naming it (and the workdir when at fault)."""
    if not spec.command:
        return "cannot start the command: it is empty"
    command = f"cannot start {spec.command[0]!r}"
    if not isinstance(exc, OSError):
        return f"{command}: {exc}"
    if exc.filename is not None and os.fspath(exc.filename) == os.fspath(spec.workdir):
        return f"{command}: working directory {spec.workdir}: {exc.strerror}"
    if isinstance(exc, FileNotFoundError):
        where = "no such file" if "/" in spec.command[0] else "command not found in PATH"
        return f"{command}: {where}"
    if isinstance(exc, PermissionError):
        return f"{command}: permission denied (not executable, or a directory)"
    if exc.errno == errno.ENOEXEC:
        return f"{command}: not an executable format (does a script lack its #! line?)"
    return f"{command}: {exc.strerror or exc}"


class LineSplitter:
    """Turns one stream's bytes into lines for the sink; holds at most one partial line."""

    __slots__ = ("_pending", "_sink", "_stream")

    def __init__(self, stream: Stream, sink: LineSink) -> None:
        self._stream = stream
        self._sink = sink
        self._pending = b""

    def feed(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            self._emit(line[:-1] if line.endswith(b"\r") else line)
        # Deliver the head of an overlong line now to bound memory. Only once more than
        # MAX + 1 bytes wait is it sure the line (less a final \r) will be longer than
        # MAX, so the pieces never depend on how the reads were split.
        while len(self._pending) > MAX_LINE_BYTES + 1:
            end = _piece_end(self._pending)
            self._send(self._pending[:end])
            self._pending = self._pending[end:]

    def close(self) -> None:
        """At end of stream: deliver a last line that had no newline."""
        if self._pending:
            self._emit(self._pending)
            self._pending = b""

    def _emit(self, line: bytes) -> None:
        while len(line) > MAX_LINE_BYTES:
            end = _piece_end(line)
            self._send(line[:end])
            line = line[end:]
        self._send(line)

    def _send(self, line: bytes) -> None:
        self._sink(self._stream, line.decode("utf-8", errors="replace"))


def _piece_end(line: bytes) -> int:
    """Where to cut the first piece of a line longer than MAX_LINE_BYTES.

    Backs off (at most three bytes) so a UTF-8 character is not cut in two; bytes that
    are not UTF-8 are cut anywhere.
    """
    end = MAX_LINE_BYTES
    while end > MAX_LINE_BYTES - 3 and _continuation(line[end]):
        end -= 1
    return MAX_LINE_BYTES if _continuation(line[end]) else end


def _continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


class _Watch:
    """Waits for one started process: reads its pipes, stops it, ends its group."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        on_line: LineSink,
        cancel: threading.Event,
        grace: float,
        deadline: float | None,
        leftovers: Leftovers,
    ) -> None:
        self.proc = proc
        self.pgid = proc.pid  # start_new_session: the child leads its own group
        self.leftovers = leftovers
        self.cancel = cancel
        self.grace = grace
        self.deadline = deadline
        self.stop: StopReason | None = None
        self.term_at: float | None = None
        self.kill_at: float | None = None
        self.pidfd = _open_pidfd(proc.pid)
        self.selector = selectors.PollSelector()
        self.splitters: dict[int, LineSplitter] = {}
        self._watch_pipes(on_line)

    def _watch_pipes(self, on_line: LineSink) -> None:
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        pipes: tuple[tuple[Stream, IO[bytes]], ...] = (
            ("stdout", self.proc.stdout),
            ("stderr", self.proc.stderr),
        )
        for stream, pipe in pipes:
            splitter = LineSplitter(stream, on_line)
            self.splitters[pipe.fileno()] = splitter
            self.selector.register(pipe.fileno(), selectors.EVENT_READ, splitter)
        if self.pidfd is not None:
            self.selector.register(self.pidfd, selectors.EVENT_READ, None)

    # -- the loop

    def wait(self) -> None:
        """Until the main process has exited and its group is gone; then drain the pipes."""
        while not self._done():
            self._step()
        self._drain()

    def _step(self) -> None:
        timeout = self._timeout()
        if self.pidfd is None and self.proc.returncode is None and not self.selector.get_map():
            events = []
            self._wait_exit(timeout)  # nothing to select on: no pidfd, both pipes closed
        else:
            events = self.selector.select(timeout)
        for key, _ in events:
            if key.data is None:
                self._reap()
            else:
                self._read(key.fd)
        if self.pidfd is None:
            self._poll_exit()
        self._check(time.monotonic())

    def _timeout(self) -> float:
        """Seconds the next select may wait: until a deadline, or the next look at cancel."""
        now = time.monotonic()
        limits = [POLL_SECONDS]
        if self.deadline is not None and self.stop is None:
            limits.append(self.deadline - now)
        if self.term_at is not None and self.kill_at is None:
            limits.append(self.term_at + self.grace - now)
        return max(0.0, min(limits))

    def _check(self, now: float) -> None:
        """Start stopping on cancel or timeout; KILL once TERM's grace has passed."""
        if self.proc.returncode is None and self.stop is None:
            if self.cancel.is_set():
                self._terminate("cancel", now)
            elif self.deadline is not None and now >= self.deadline:
                self._terminate("timeout", now)
        grace_over = self.term_at is not None and now >= self.term_at + self.grace
        # A cancel after the command ended by itself need not wait out its leftovers' grace.
        cancelled_late = self.stop is None and self.term_at is not None and self.cancel.is_set()
        if self.kill_at is None and (grace_over or cancelled_late):
            _signal_group(self.pgid, signal.SIGKILL)
            if self.proc.returncode is not None:  # else the leftovers are not known yet
                self.leftovers.kill(self.leftovers.find())
            self.kill_at = now

    def _terminate(self, reason: StopReason, now: float) -> None:
        log.info("stopping process group %d (%s)", self.pgid, reason)
        self.stop = reason
        self.term_at = now
        _signal_group(self.pgid, signal.SIGTERM)

    def _done(self) -> bool:
        if self.proc.returncode is None:
            return False
        _collect_group(self.pgid)
        group_alive = process_group_alive(self.pgid)
        # None found when the main process ended: none can appear later (any would be
        # started by one found), so the common run looks only once.
        left = self.leftovers.find() if self.leftovers.count else {}
        if left:
            self.leftovers.signal(left, signal.SIGTERM)
            if self.kill_at is not None:
                self.leftovers.kill(left)
        if not group_alive and not left:
            self.leftovers.collect()
            return True
        if self.kill_at is not None and time.monotonic() >= self.kill_at + KILL_WAIT_SECONDS:
            log.warning("processes of group %d survived SIGKILL; leaving them", self.pgid)
            self.leftovers.collect()
            return True
        return False

    # -- the main process

    def _reap(self) -> None:
        """The pidfd says the main process exited: end its leftovers, collect its status."""
        assert self.pidfd is not None
        self.selector.unregister(self.pidfd)
        self._end_leftovers()
        self.proc.wait()

    def _poll_exit(self) -> None:
        # Without a pidfd the exit is only seen by asking (here or in _wait_exit), which
        # also collects the status: the TERM to the leftovers comes after, not before.
        if self.proc.poll() is not None:
            self._end_leftovers()

    def _wait_exit(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)  # Popen backs off from 0.5 ms: no fixed sleep

    def _end_leftovers(self) -> None:
        # Background processes must not outlive the run. With a pidfd this runs while
        # the main process is still an uncollected zombie, so the group id cannot have
        # been reused by anyone else yet. The group gets TERM once only (a stop may
        # have sent it already); the processes outside it that are found, each once.
        left = self.leftovers.find()
        if self.term_at is None:
            self.term_at = time.monotonic()
            _signal_group(self.pgid, signal.SIGTERM)
        self.leftovers.signal(left, signal.SIGTERM)

    # -- the pipes

    def _read(self, fd: int) -> None:
        data = os.read(fd, _READ_BYTES)
        if data:
            self.splitters[fd].feed(data)
            return
        self.selector.unregister(fd)
        self.splitters.pop(fd).close()

    def _drain(self) -> None:
        """Read what is left; give up after DRAIN_SECONDS if a process outside holds a pipe."""
        end = time.monotonic() + DRAIN_SECONDS
        while self.splitters and (left := end - time.monotonic()) > 0:
            for key, _ in self.selector.select(left):
                self._read(key.fd)
        if self.splitters:
            log.info("a process outside group %d still holds the output; stop reading", self.pgid)
        for splitter in self.splitters.values():
            splitter.close()
        self.splitters.clear()

    # -- the end

    def abort(self) -> None:
        """A callback raised (or the thread was interrupted): leave nothing running."""
        _signal_group(self.pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(KILL_WAIT_SECONDS)
        if not _wait_group_gone(self.pgid, KILL_WAIT_SECONDS):
            log.warning("process group %d survived SIGKILL", self.pgid)
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while (left := self.leftovers.find()) and time.monotonic() < deadline:
            self.leftovers.kill(left)
            time.sleep(POLL_SECONDS)
        self.leftovers.collect()

    def close(self) -> None:
        self.selector.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    def result(self, duration: float) -> RunResult:
        code = self.proc.returncode
        if code is not None and code < 0:
            log.info("process %d ended by signal %s", self.proc.pid, _signal_name(-code))
        if self.leftovers.count:
            log.info("ended %d process(es) left by group %d", self.leftovers.count, self.pgid)
        return RunResult(
            exit_code=code if code is not None and code >= 0 else None,
            duration=duration,
            timed_out=self.stop == "timeout",
            killed=self.stop == "cancel",
            leftovers=self.leftovers.count,
        )


def _open_pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when `pid` exits (Linux 5.3+), else None."""
    pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return pidfd_open(pid)
    except OSError:  # an older kernel, or a seccomp filter that forbids it
        return None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
