"""Worker processes that end when the process they work for ends, even by SIGKILL.

The validation pool's workers are forked by multiprocessing's fork server, not by the
daemon, and each holds both ends of its job queue and the fork server's liveness pipe:
when the daemon is killed, nothing they wait on ever closes, and they (with the fork
server and the resource tracker, about 275 MB in all) would run on forever. Started with
`exit_with` as the pool's initializer, a worker watches the daemon itself and exits the
moment it is gone; the fork server and resource tracker then see their pipes close and
exit too.
"""

from __future__ import annotations

import os
import select
import threading
import time

EXIT_CODE = 70  # a worker whose daemon is gone (EX_SOFTWARE: nothing is wrong with it)
POLL_SECONDS = 1.0  # without a pidfd (not Linux 5.3+): how often the daemon is looked for


def exit_with(pid: int) -> None:
    """End this process as soon as process `pid` has ended (a pool's `initializer`)."""
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(EXIT_CODE)  # already gone
    except (AttributeError, OSError):
        pidfd = None  # no pidfd here: poll
    threading.Thread(target=_watch, args=(pid, pidfd), name="lifeline", daemon=True).start()


def _watch(pid: int, pidfd: int | None) -> None:
    if pidfd is not None:
        select.select([pidfd], [], [])  # readable once `pid` has ended; no polling
    else:
        while _alive(pid):
            time.sleep(POLL_SECONDS)
    os._exit(EXIT_CODE)  # no cleanup: whatever it did was for the process that is gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
