"""Where a daemon (or `headwater run --data-dir`) keeps its data, and the check that it
stays out of git.

A data directory holds the database, the session and sealing keys, the git mirror and
the files of executions. Inside a git working tree (a flows repository, typically, after
`headwater init DIR && cd DIR && headwater up --repo .`) `git add -A` would commit all
that. So the default data directory, `.headwater` in the current folder, moves out of
any working tree the current folder is in, to the user's data folder; and a data
directory given explicitly inside a working tree is refused when git tracks anything
in it, or does not ignore it.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from headwater.daemon.errors import HeadwaterError
from headwater.daemon.git import run_local

DEFAULT_DATA_DIR = Path(".headwater")  # in the current folder, when it is in no git working tree
DATA_HOME_VARIABLE = "XDG_DATA_HOME"  # the user's data folder (XDG base directories)
DATA_HOME_FALLBACK = Path(".local", "share")  # under the home folder when the variable is unset
DATA_SUBFOLDER = "headwater"  # one folder per working tree below the user's data folder
TREE_HASH_CHARS = 12  # of the working tree path's sha256, to tell apart trees of one name
GIT_TIMEOUT_SECONDS = 30.0  # `git ls-files` / `git check-ignore`: local work
DATABASE_FILE = "headwater.db"  # SQLite's file in a data directory (store/db.py)
TRACKED_SHOWN = 3  # tracked files a refusal names


class DataDirRefused(HeadwaterError):
    """A data directory inside a git working tree that git would commit."""


@dataclass(frozen=True)
class DataDir:
    path: Path
    moved_out_of: Path | None = None
    """The working tree the default was moved out of, if it was."""
    left_behind: Path | None = None
    """`.headwater` in that tree when it holds an earlier daemon's database."""

    def describe(self) -> str:
        """Where the data lives, for the daemon's first line."""
        if self.moved_out_of is None:
            return str(self.path)
        return f"{self.path} (outside the git working tree {self.moved_out_of})"


def choose_data_dir(
    given: Path | None, cwd: Path, environ: Mapping[str, str] | None = None
) -> DataDir:
    """The data directory to use: `given` once checked (DataDirRefused), else the default.

    The default is `.headwater` in `cwd`, unless `cwd` is in a git working tree: then it
    is `$XDG_DATA_HOME/headwater/<tree name>-<hash of its path>` (`~/.local/share/…`
    without the variable), the same from any folder of that tree.
    """
    if given is not None:
        check_data_dir(given if given.is_absolute() else cwd / given)
        return DataDir(given)
    tree = work_tree_of(cwd / DEFAULT_DATA_DIR)
    if tree is None:
        return DataDir(DEFAULT_DATA_DIR)
    path = outside_data_dir(tree, os.environ if environ is None else environ)
    earlier = cwd / DEFAULT_DATA_DIR
    return DataDir(path, tree, earlier if (earlier / DATABASE_FILE).exists() else None)


def outside_data_dir(tree: Path, environ: Mapping[str, str]) -> Path:
    """The default data directory of a daemon started in the working tree `tree`."""
    home = environ.get(DATA_HOME_VARIABLE, "")
    base = Path(home) if os.path.isabs(home) else _home(environ) / DATA_HOME_FALLBACK
    digest = hashlib.sha256(str(tree).encode()).hexdigest()[:TREE_HASH_CHARS]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", tree.name) or "repository"
    return base / DATA_SUBFOLDER / f"{name}-{digest}"


def _home(environ: Mapping[str, str]) -> Path:
    home = environ.get("HOME", "")
    if os.path.isabs(home):
        return Path(home)
    try:
        return Path.home()
    except RuntimeError:
        raise DataDirRefused(
            "the current folder is in a git working tree, where the data directory cannot "
            "be, and there is no home folder to keep it in; give --data-dir (outside the "
            "working tree) or set HEADWATER_DATA_DIR"
        ) from None


def work_tree_of(path: Path) -> Path | None:
    """The root of the git working tree `path` is in (or would be in, once created)."""
    folder = path.resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def check_data_dir(path: Path) -> None:
    """Refuse a data directory that git would commit: one inside a working tree where git
    tracks files, or which git does not ignore. Anywhere else is fine."""
    resolved = path.resolve()
    tree = work_tree_of(resolved)
    if tree is None:
        return
    if resolved == tree:
        raise DataDirRefused(
            f"the data directory {resolved} is the git working tree {tree} itself; "
            "give a folder outside it"
        )
    relative = resolved.relative_to(tree).as_posix()
    tracked = [
        name
        for name in _git(
            tree, "--literal-pathspecs", "ls-files", "-z", "--", relative
        ).stdout.split("\0")
        if name
    ]
    if tracked:
        shown = ", ".join(tracked[:TRACKED_SHOWN]) + (", …" if len(tracked) > TRACKED_SHOWN else "")
        raise DataDirRefused(
            f"the data directory {resolved} is inside the git working tree {tree} and git tracks "
            f"files in it ({shown}); give a data directory outside the working tree, or "
            "none (the default is kept outside it)"
        )
    if not _ignored(tree, relative):
        raise DataDirRefused(
            f"the data directory {resolved} is inside the git working tree {tree} and git does "
            "not ignore it, so `git add -A` would commit the database and the keys; add the "
            f"line /{relative}/ to {tree / '.gitignore'}, or give a data directory outside "
            "the working tree, or none (the default is kept outside it)"
        )


def _ignored(tree: Path, relative: str) -> bool:
    # The trailing slash makes a folder pattern (`data/`) match a folder not made yet.
    return _git(tree, "check-ignore", "-q", "--", relative + "/", ok=(0, 1)).returncode == 0


def _git(tree: Path, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    """Run git in `tree`; DataDirRefused when it fails (what cannot be checked is not
    accepted)."""
    try:
        result = run_local(tree, args, GIT_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataDirRefused(
            f"cannot ask git whether it would commit the data directory in {tree}: {exc}; "
            "give a data directory outside the working tree"
        ) from None
    if result.returncode not in ok:
        reason = result.stderr.strip() or f"exit {result.returncode}"
        raise DataDirRefused(
            f"cannot ask git whether it would commit the data directory in {tree}: {reason}; "
            "give a data directory outside the working tree"
        )
    return result
