"""The flows repository template: where it is installed, copying it, a first commit.

The template is `flows-repo-template/` in Headwater's source, installed as the data
package `headwater.template` (setup.py). `headwater init DIR` copies it and commits it;
the daemon makes its demo repository the same way when it is given no repository.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
from pathlib import Path

from headwater.daemon import defaults
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.git import run_local

log = logging.getLogger(__name__)

TEMPLATE_PACKAGE = "headwater.template"  # what setup.py installs the template as
SOURCE_FOLDER = "flows-repo-template"  # the template in a source checkout
NOT_COPIED = ("__pycache__", ".pyc", ".DS_Store")  # leftovers of running a script by hand
BRANCH = "main"  # the branch of a new repository
INITIAL_COMMIT_MESSAGE = "Initial flows from the Headwater template"
FALLBACK_AUTHOR = ("Headwater", "headwater@localhost")  # when git knows no user
GIT_TIMEOUT_SECONDS = 60.0  # any one git command of init; local work, so generous


class TemplateError(HeadwaterError):
    """The template cannot be found, copied or committed."""


class DestinationNotEmpty(TemplateError):
    """The folder to create a repository in already holds something."""


def template_root() -> Path:
    """The template's folder: the installed package, or the source checkout's folder.

    A wheel installs it as `headwater.template`; an editable install maps that name to
    `flows-repo-template/`. An editable install made before the template was packaged
    knows no such name, so the folder beside the code is the fallback.
    """
    for folder in _package_folders():
        if (folder / defaults.DEFAULT_FLOWS_DIR).is_dir():
            return folder
    checkout = Path(__file__).resolve().parent.parent / SOURCE_FOLDER
    if (checkout / defaults.DEFAULT_FLOWS_DIR).is_dir():
        return checkout
    raise TemplateError(
        f"the flows repository template ({TEMPLATE_PACKAGE}) is not installed; reinstall Headwater"
    )


def _package_folders() -> list[Path]:
    # The package has no __init__.py (it is data, copied as it is), so it is a namespace
    # package: its folders are its search locations, not a `__file__`.
    try:
        spec = importlib.util.find_spec(TEMPLATE_PACKAGE)
    except ImportError:
        return []
    if spec is None or spec.submodule_search_locations is None:
        return []
    return [Path(location) for location in spec.submodule_search_locations]


def template_files(root: Path | None = None) -> list[Path]:
    """Every file of the template, relative to its root, sorted (dotfiles included)."""
    root = root or template_root()
    return sorted(
        path.relative_to(root)
        for path in root.rglob("*")
        if path.is_file() and not any(part.endswith(NOT_COPIED) for part in path.parts)
    )


def copy_template(dest: Path) -> list[Path]:
    """Copy the template into `dest`, created if missing; the files written, sorted.

    A `dest` that exists and is not an empty folder is refused (DestinationNotEmpty):
    nothing in it is ever overwritten. If copying fails half-way, `dest` is left as
    it was found.
    """
    root = template_root()
    created = _claim(dest)
    written: list[Path] = []
    try:
        for relative in template_files(root):
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / relative, target)
            written.append(target)
    except OSError as exc:
        _restore(dest, created)
        raise TemplateError(f"cannot copy the template into {dest}: {exc}") from None
    log.info("copied the template into %s", dest, extra={"files": len(written)})
    return written


def _claim(dest: Path) -> bool:
    """Make sure `dest` is an empty folder; whether it had to be created."""
    if dest.is_dir():
        if any(dest.iterdir()):
            raise DestinationNotEmpty(
                f"{dest} already exists and is not empty; give a new or empty folder"
            )
        return False
    if dest.exists() or dest.is_symlink():
        raise DestinationNotEmpty(f"{dest} already exists and is not a folder")
    try:
        dest.mkdir(parents=True)
    except OSError as exc:
        raise TemplateError(f"cannot create {dest}: {exc}") from None
    return True


def _restore(dest: Path, created: bool) -> None:
    """Put `dest`, which was empty or missing, back as it was."""
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def new_repository(dest: Path) -> tuple[list[Path], str]:
    """`headwater init`: the template copied into `dest` and committed.

    Returns the files written and the commit's sha. On any failure `dest` is left as
    it was found (missing, or empty).
    """
    existed = dest.is_dir()
    files = copy_template(dest)
    try:
        sha = init_repository(dest)
    except TemplateError:
        _restore(dest, created=not existed)
        raise
    return files, sha


def init_repository(dest: Path) -> str:
    """Make `dest` a git repository on branch `main` with everything in it committed.

    A `dest` that is missing or empty gets the template first, so the daemon's demo
    repository is one call. The author is the user git is configured with; where git
    knows none (no global config, as on a fresh server), it is
    `Headwater <headwater@localhost>`. Returns the sha of the commit.
    """
    if not dest.is_dir() or not any(dest.iterdir()):
        copy_template(dest)
    _git(dest, "-c", f"init.defaultBranch={BRANCH}", "init", "--quiet")
    # Older gits ignore init.defaultBranch; pointing HEAD at the branch works everywhere.
    _git(dest, "symbolic-ref", "HEAD", f"refs/heads/{BRANCH}")
    _git(dest, "add", "--all")
    identity = _fallback_identity(dest)
    _git(dest, *identity, "commit", "--quiet", "--no-verify", "-m", INITIAL_COMMIT_MESSAGE)
    return _git(dest, "rev-parse", "HEAD").strip()


def commit_author(dest: Path, ref: str = "HEAD") -> str:
    """`Name <email>` of a commit's author."""
    return _git(dest, "log", "-1", "--format=%an <%ae>", ref).strip()


def _fallback_identity(dest: Path) -> list[str]:
    """`-c user.name=…`, `-c user.email=…` for what git is not configured with.

    Environment variables (GIT_AUTHOR_NAME, …) still win over these, as over any
    configuration; EMAIL, which git reads only when user.email is unset, is kept.
    """
    options: list[str] = []
    name, email = FALLBACK_AUTHOR
    if not _git(dest, "config", "user.name", ok=(0, 1)).strip():
        options += ["-c", f"user.name={name}"]
    if not _git(dest, "config", "user.email", ok=(0, 1)).strip() and not os.environ.get("EMAIL"):
        options += ["-c", f"user.email={email}"]
    return options


def _git(cwd: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    """Run git in `cwd`; its standard output. TemplateError when it fails."""
    try:
        result = run_local(cwd, args, GIT_TIMEOUT_SECONDS)
    except FileNotFoundError:
        if shutil.which("git") is None:
            raise TemplateError("git is not installed (or not on PATH); install git") from None
        raise TemplateError(f"cannot run git in {cwd}: no such folder") from None
    except subprocess.TimeoutExpired:
        raise TemplateError(
            f"git {' '.join(args)} took longer than {GIT_TIMEOUT_SECONDS:.0f} s in {cwd}"
        ) from None
    if result.returncode not in ok:
        reason = result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}"
        raise TemplateError(f"git {' '.join(args)} failed in {cwd}: {reason}")
    return result.stdout
