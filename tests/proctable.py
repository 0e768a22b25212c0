"""Looking for processes by their command line in /proc, to see what is left running."""

from __future__ import annotations

import os
from pathlib import Path


def processes_with(argument: str) -> list[int]:
    """Live processes (not zombies) with `argument` as one of their command line's words."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue  # ended meanwhile
        if argument.encode() in argv and stat.rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X"):
            found.append(int(name))
    return found


def in_session(sid: int) -> list[int]:
    """Live processes (not zombies) of session `sid`."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in (b"Z", b"X"):
            found.append(int(name))
    return found
