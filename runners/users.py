"""Running commands as another user than the runner's own (`HEADWATER_TASK_USER`).

A command that runs as the runner's user can read the runner's environment
(`/proc/<pid>/environ`: its tokens and secrets), signal it, and read or change
whatever files it can. Run as a user of its own, the command can do none of that.
Switching users needs privileges: `CAP_SETUID` and `CAP_SETGID` to start the command
as the user, `CAP_CHOWN` to give it its working directory, `CAP_KILL` to stop it, and
`CAP_DAC_OVERRIDE` to read what it leaves and remove its directory; root has them all.
`subprocess.Popen`'s `user`, `group` and `extra_groups` switch, without a `preexec_fn`.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

TASK_UMASK = 0o022
"""The file mode mask commands start with (the runner's own may be stricter)."""

# Capability numbers from <linux/capability.h>, and why the runner needs each one.
REQUIRED_CAPABILITIES = {
    "CAP_CHOWN": (0, "give the command its working directory"),
    "CAP_DAC_OVERRIDE": (1, "read the files it leaves and remove its directory"),
    "CAP_KILL": (5, "stop it"),
    "CAP_SETGID": (6, "start it in the user's groups"),
    "CAP_SETUID": (7, "start it as the user"),
}
CAP_SYS_PTRACE = 19
"""Reading another user's `/proc/<pid>/environ`, which finds what a command left running
outside its session (`headwater.runners.leftovers`)."""


class UserRefused(ValueError):
    """The user cannot be used to run commands here; the message says why."""


@dataclass(frozen=True)
class TaskUser:
    """A user commands run as: its ids, groups and home."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    """Supplementary groups (from the group database), the primary group included."""
    home: str

    @classmethod
    def lookup(cls, name: str) -> TaskUser:
        """The user called `name` (or with that numeric id), from the user database."""
        try:
            entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        except KeyError:
            raise UserRefused(f"there is no user {name!r} on this machine") from None
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)

    def environment(self) -> dict[str, str]:
        """Variables that name the user, for the command's environment."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}

    def give(self, directory: Path) -> None:
        """Make `directory` and everything in it belong to the user.

        Symbolic links are changed themselves, never followed, and the walk holds each
        directory open while it works in it (`os.fwalk`), so a link swapped in by a
        running command cannot lead it elsewhere.
        """
        os.chown(directory, self.uid, self.gid, follow_symlinks=False)
        for _, folders, files, fd in os.fwalk(directory, follow_symlinks=False):
            for name in (*folders, *files):
                os.chown(name, self.uid, self.gid, dir_fd=fd, follow_symlinks=False)

    def can_search(self, folder: Path) -> bool:
        """Whether the user may pass through `folder` (its mode bits; ACLs are not read)."""
        info = folder.stat()
        if info.st_uid == self.uid:
            return bool(info.st_mode & stat.S_IXUSR)
        if info.st_gid in self.groups:
            return bool(info.st_mode & stat.S_IXGRP)
        return bool(info.st_mode & stat.S_IXOTH)


def check_can_run_as(user: TaskUser) -> None:
    """Refuse a user that would protect nothing, or that this process cannot become."""
    if user.uid == 0:
        raise UserRefused(f"{user.name!r} is root: commands would run with every privilege")
    if user.uid == os.geteuid():
        raise UserRefused(
            f"{user.name!r} is the user Headwater runs as: the command could still read "
            "its environment and signal it; choose a user of its own"
        )
    have = effective_capabilities()
    missing = [name for name, (bit, _) in REQUIRED_CAPABILITIES.items() if not have >> bit & 1]
    if missing:
        needs = "; ".join(f"{name} to {REQUIRED_CAPABILITIES[name][1]}" for name in missing)
        raise UserRefused(
            f"running commands as {user.name!r} needs Headwater to run as root, or with "
            f"these capabilities it lacks: {needs}"
        )


def effective_capabilities() -> int:
    """This process's effective capability set, as a bit mask.

    Where /proc cannot say (not Linux), root is taken to have every capability.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as file:
            for line in file:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return -1 if os.geteuid() == 0 else 0


def can_read_others_processes() -> bool:
    """Whether this process may read another user's process environment."""
    return bool(effective_capabilities() >> CAP_SYS_PTRACE & 1)
