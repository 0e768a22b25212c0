"""`HEADWATER_TASK_USER`: process tasks run as a user of their own, checked at start.

The daemon refuses to start when the user is missing, is root or the daemon's own
user, or when the daemon cannot switch to it (`headwater.runners.users`). Otherwise
it keeps the data directory from that user: files the daemon creates from now on are
its own alone (umask 077), the data directory and `workdirs/` let the user pass
through but not list them (0711), and group and others lose their access to what the
data directory already holds (the database, internal storage, the mirror). Each
attempt's working directory is given to the user when its command starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from headwater.daemon.engine.worker import WORKDIRS
from headwater.daemon.errors import HeadwaterError
from headwater.runners.users import (
    TaskUser,
    UserRefused,
    can_read_others_processes,
    check_can_run_as,
)

log = logging.getLogger(__name__)

DAEMON_UMASK = 0o077  # with a task user, what the daemon creates is its own alone
PASS_THROUGH_MODE = 0o711  # the data directory and workdirs/: enter, but not list
SETTING = "HEADWATER_TASK_USER"


def prepare_task_user(name: str, data_dir: Path) -> TaskUser:
    """The task user, once the daemon may run commands as it and the data directory
    is kept from it; a `HeadwaterError` saying what to change otherwise."""
    try:
        user = TaskUser.lookup(name.strip())
        check_can_run_as(user)
    except UserRefused as exc:
        raise HeadwaterError(f"{SETTING}: {exc}") from None
    os.umask(DAEMON_UMASK)
    workdirs = data_dir / WORKDIRS
    workdirs.mkdir(parents=True, exist_ok=True)
    for folder in (data_dir, workdirs):
        folder.chmod(PASS_THROUGH_MODE)
    _keep_from_others(data_dir, skip=workdirs)
    _check_reachable(user, workdirs)
    if not can_read_others_processes():
        log.warning(
            "%s: without CAP_SYS_PTRACE the daemon cannot read the environment of %s's "
            "processes, so processes a task starts outside its session are not ended",
            SETTING,
            user.name,
        )
    return user


def _keep_from_others(data_dir: Path, skip: Path) -> None:
    """Take group and other access from what the data directory holds at its top: the
    folders' contents are then out of reach whatever their own modes."""
    for entry in data_dir.iterdir():
        if entry == skip or entry.is_symlink():
            continue
        with contextlib.suppress(FileNotFoundError):  # a SQLite journal came and went
            mode = stat.S_IMODE(entry.stat().st_mode)
            if mode & 0o077:
                entry.chmod(mode & ~0o077)


def _check_reachable(user: TaskUser, workdirs: Path) -> None:
    """Every folder above the working directories must let the user pass."""
    for folder in (workdirs.resolve(), *workdirs.resolve().parents):
        if not user.can_search(folder):
            raise HeadwaterError(
                f"{SETTING}: user {user.name!r} cannot reach the working directories in "
                f"{workdirs}: {folder} does not let it pass (mode "
                f"{stat.S_IMODE(folder.stat().st_mode):04o}); allow it (chmod o+x {folder}) "
                "or put the data directory elsewhere"
            )
