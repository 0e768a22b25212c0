"""Processes a run leaves behind, inside its process group or out of it.

A command may start processes that outlive it: `sleep 100 &` stays in the run's
process group, which the runner signals whole; but `setsid`, or a daemon's double
fork, leaves the group and the session, out of reach of `killpg`. Two things find
every one of them without cgroups or root (Linux only):

- The runner's process is a child subreaper (`PR_SET_CHILD_SUBREAPER`): a descendant
  whose parent ends is re-parented to it instead of to init, so whatever a run started
  stays in the runner's process tree. When the command's main process has ended, each
  process it left hangs below a direct child of the runner's process.
- Every run's environment carries a marker (`HEADWATER_RUN_MARKER`, random per run)
  that the processes it starts inherit.

A run's leftovers are the direct children of the runner's process that are in the
run's session or carry its marker, and every process below them. A process that
leaves the session *and* clears its environment is not found (nothing short of a
cgroup or a container would find it): the Docker runner is the boundary for that.

Only processes found this way are signalled, and only they are collected once they
end (`waitpid` on their own pid, never -1, which would steal the exit status that a
`subprocess.Popen` elsewhere in the process waits for); so are ended processes of the
run's session that became our children. One that left the session and ended by
itself before it was ever found cannot be told from the children others wait for: it
stays an uncollected entry in the process table (no memory, no CPU) until the runner's
process exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MARKER_VARIABLE = "HEADWATER_RUN_MARKER"
"""The variable that marks every process of one run (a random value per run)."""
_PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
_ZOMBIE_STATES = (b"Z", b"X")  # ended, not yet collected (or being collected)

_subreaper_lock = threading.Lock()
_subreaper: bool | None = None  # None: not tried yet


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (once; Linux only).

    Returns whether it is one. Orphans of a run then stay below this process, where
    `Leftovers` finds them; elsewhere (or when the kernel refuses) only the run's
    process group is ended.
    """
    global _subreaper
    with _subreaper_lock:
        if _subreaper is None:
            _subreaper = _set_subreaper()
        return _subreaper


def _set_subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0
    except (OSError, AttributeError) as exc:
        log.info("cannot become a child subreaper (%s): only process groups are ended", exc)
        return False
    if failed:
        reason = os.strerror(ctypes.get_errno())
        log.info("cannot become a child subreaper (%s): only process groups are ended", reason)
    return not failed


def new_marker() -> str:
    """A fresh marker value for one run."""
    return secrets.token_hex(12)


@dataclass(frozen=True)
class _Stat:
    state: bytes
    ppid: int
    sid: int
    start: int  # clock ticks after boot: with the pid, names one process for good

    @property
    def live(self) -> bool:
        return self.state not in _ZOMBIE_STATES


def _stat(pid: int) -> _Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            raw = file.read()
    except OSError:
        return None  # gone
    # The command name in parentheses may hold spaces and parentheses: split after it.
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 20:
        return None
    return _Stat(fields[0], int(fields[1]), int(fields[3]), int(fields[19]))


def _children(pid: int, every_thread: bool) -> list[int]:
    """The children of `pid`: of its main thread only, or of each of its threads.

    A child belongs to the thread that started it; an orphan re-parented to a
    subreaper goes to its first live thread, the main thread (the kernel's
    `find_alive_thread`). So the runner's own process is read through its main thread
    only (30 microseconds against nearly 1 ms for 30 threads), other processes whole.
    """
    if not every_thread:
        try:
            with open(f"/proc/{pid}/task/{pid}/children", "rb") as file:
                return [int(child) for child in file.read().split()]
        except OSError:
            pass  # the main thread has ended: read every thread
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as file:
                found.extend(int(child) for child in file.read().split())
        except OSError:
            continue  # the thread ended meanwhile
    return found


def _carries(pid: int, needle: bytes) -> bool:
    """Whether the environment `pid` started with holds `needle` (a whole NAME=value)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            environ = file.read()
    except OSError:
        return False  # gone, or another user's without the right to read it
    return needle in b"\0" + environ


class Leftovers:
    """The processes one run left running; see the module docstring.

    Call `find()` once the run's main process has ended (it must not be collected yet,
    so its process group id cannot have been reused). Not thread-safe: one per run.
    """

    def __init__(self, marker: str, pgid: int) -> None:
        self.pgid = pgid
        self._needle = f"\0{MARKER_VARIABLE}={marker}\0".encode()
        self._seen: dict[int, int] = {}  # pid -> start time of every process found
        self._signalled: dict[int, set[int]] = {}  # signal -> pids it was sent to

    @property
    def count(self) -> int:
        """How many processes were found left running, over every `find()`."""
        return len(self._seen)

    def find(self) -> dict[int, int]:
        """The run's live leftovers now, pid -> start time (empty without a subreaper)."""
        me = os.getpid()
        roots = [pid for pid in _children(me, every_thread=False) if self._belongs(pid)]
        live: dict[int, int] = {}
        stack = [*roots, *self._seen]
        while stack:
            pid = stack.pop()
            if pid in live:
                continue
            stat = _stat(pid)
            if stat is None or not stat.live or self._seen.get(pid, stat.start) != stat.start:
                continue  # ended, or the pid now names another process
            live[pid] = stat.start
            stack.extend(_children(pid, every_thread=True))
        self._seen.update(live)
        return live

    def _belongs(self, pid: int) -> bool:
        if pid == self.pgid or pid in self._seen:
            return False  # the main process itself (it leads the group); or walked anyway
        stat = _stat(pid)
        if stat is None or not stat.live:
            return False
        # The run's session id is its group id (its main process started both).
        return stat.sid == self.pgid or _carries(pid, self._needle)

    def signal(self, pids: Iterable[int], signum: int) -> None:
        """Send `signum` to each of `pids` not sent it before."""
        sent = self._signalled.setdefault(signum, set())
        for pid in pids:
            if pid in sent:
                continue
            sent.add(pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    def kill(self, pids: Iterable[int]) -> None:
        """KILL each of `pids` (again: one may have been found after an earlier KILL)."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def collect(self) -> None:
        """Collect the ended processes found that became this process's children.

        Only pids found alive as the run's, with the start time they had then, and
        ended ones of the run's session: never another process that reused a number,
        never a child someone else waits for. Call it after the main process was
        collected (it is in the session too).
        """
        me = os.getpid()
        ended = [pid for pid, start in self._seen.items() if self._ended_child(pid, start, me)]
        for pid in _children(me, every_thread=False):
            stat = _stat(pid)
            if stat is not None and not stat.live and stat.sid == self.pgid and stat.ppid == me:
                ended.append(pid)  # its session holds the number: no other process has it
        for pid in ended:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    @staticmethod
    def _ended_child(pid: int, start: int, me: int) -> bool:
        stat = _stat(pid)
        return stat is not None and stat.start == start and not stat.live and stat.ppid == me
