"""Git plumbing for sync: a bare mirror of one branch of the flows repository.

Everything goes through the `git` command's plumbing (`ls-remote`, `fetch`,
`diff-tree -z`, `ls-tree -z`, `log -z`, a persistent `cat-file --batch`), never
gitpython, which leaks in long-running processes (DESIGN.md, known traps). Every call
runs without a shell, in its own process group, under a timeout that kills the whole
group (git's helpers, such as `git-remote-https` or `ssh`, included), with
`GIT_TERMINAL_PROMPT=0` and `LC_ALL=C`.

Credentials travel only in the environment of the git process: an http(s) token as an
`http.extraHeader` set through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`,
an SSH key as `GIT_SSH_COMMAND`. They never appear in URLs, argv, the mirror's config or
error messages; a URL with credentials in it is refused.

Two of git's transports are refused: `ext::` runs a command of the URL's choosing and
`fd::` talks over a descriptor of the daemon's own (and hangs). `check_url` refuses
them with a message, and every git call also runs with `protocol.ext.allow=never` and
`protocol.fd.allow=never`, so a URL that slipped past the check is refused by git.
`Mirror.close()` ends every git process of the mirror, also a fetch in flight.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from headwater.daemon.errors import HeadwaterError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0  # seconds any one git command may take before it is killed
# Bytes of cat-file requests written before reading the answers: far below any pipe's
# capacity, so a write never blocks while git waits for us to read (a deadlock).
BATCH_REQUEST_BYTES = 8192
STOP_GRACE = 5.0  # seconds to wait for a killed or closed git process to go away
COLLECT_POLL_SECONDS = 0.01  # how often a killed git's helpers are looked for to collect
MAX_ERROR_CHARS = 1500  # git's stderr quoted in an error is cut to this length

SYMLINK_MODE = "120000"
GITLINK_MODE = "160000"  # a submodule

# Variables that would point git at another repository or smuggle in configuration;
# a daemon started from a git hook inherits some of them.
# fmt: off
_INHERITED_GIT_VARS = frozenset({
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_PREFIX", "GIT_QUARANTINE_PATH",
    "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
})
# fmt: on
_SHA = re.compile(r"[0-9a-f]{4,64}")
_BAD_REF_PART = re.compile(r"^[-/.]|\.\.|[\x00-\x20\x7f~^:?*\[\\]|//|@\{|/\.|\.lock(/|$)|[/.]$")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/@\s]+)@")
_SCHEME = re.compile(r"(?i)^([a-z][a-z0-9+.-]*)://")
_HELPER = re.compile(r"(?i)^([a-z0-9][a-z0-9+.-]*)::")  # git's <transport>::<address>
_REFUSED_TRANSPORTS = {  # transport -> what it would do
    "ext": "runs a command named in the URL",
    "fd": "talks over a file descriptor of Headwater's own process and hangs",
}
# Set in every git call's environment: git refuses these transports even if asked.
_REFUSED_PROTOCOL_CONFIG = tuple(
    (f"protocol.{name}.allow", "never") for name in _REFUSED_TRANSPORTS
)
_AUTH_SIGNS = (  # in git's stderr (LC_ALL=C): the remote wants other credentials
    "authentication failed",
    "terminal prompts disabled",
    "error: 401",
    "error: 403",
    "permission denied (publickey",
    "invalid username or password",
)


class GitError(HeadwaterError):
    """A git operation failed; the message says which and why, and never holds a secret."""


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to the remote. `repr` never shows the token."""

    token: str | None = field(default=None, repr=False)  # Bearer; "user:password" for Basic
    ssh_key_file: Path | None = None


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str  # "Name <email>"
    date: float  # author date, epoch seconds
    message: str  # the whole message, without trailing newlines
    parents: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """One file changed between two commits. A rename is a delete plus an add.

    A type change (file to symlink, say) is an "M" whose modes differ, so a caller can
    refuse symlinks (`SYMLINK_MODE`) and skip submodules (`GITLINK_MODE`).
    """

    status: Literal["A", "M", "D"]
    path: str  # relative to the repository root, with `/`
    old_blob: str | None
    new_blob: str | None
    old_mode: str | None
    new_mode: str | None


@dataclass(frozen=True)
class TreeEntry:
    path: str
    blob: str
    mode: str
    size: int  # bytes; 0 for a submodule, which has no blob here


# -- checks and scrubbing ---------------------------------------------------------------


# Variables that would point git at another repository than the one a local command
# is meant for (set, for instance, when Headwater is started from a git hook).
LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)


def run_local(cwd: Path, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """`git ARGS` in the local repository `cwd`, never prompting, in the C locale, with
    the variables that would point it elsewhere removed; raises OSError (no git, no
    folder) and subprocess.TimeoutExpired for the caller to word."""
    env = {k: v for k, v in os.environ.items() if k not in LOCATION_VARS}
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without credentials: userinfo in URLs and every given secret are masked."""
    text = _URL_USERINFO.sub(r"\1***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def check_url(url: str) -> None:
    """Refuses a remote URL that git could misread or that carries credentials."""
    if not url or url.startswith("-") or any(c in url for c in "\r\n\0"):
        raise GitError(f"not a usable git remote URL: {scrub(url)!r}")
    helper = _HELPER.match(url)
    if helper and helper.group(1).lower() in _REFUSED_TRANSPORTS:
        name = helper.group(1).lower()
        raise GitError(
            f"the remote URL {scrub(url)!r} uses git's {name}:: transport, which "
            f"{_REFUSED_TRANSPORTS[name]}; use an http(s)://, ssh://, git:// or file:// URL, "
            "user@host:path, or a local path"
        )
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    userinfo = _URL_USERINFO.match(url)
    if userinfo and (scheme in ("http", "https") or ":" in userinfo.group(2)):
        raise GitError(
            f"the remote URL {scrub(url)} has credentials in it; remove them from the URL "
            "and give the token through the token setting (HEADWATER_GIT_TOKEN) instead"
        )


def check_ref_name(name: str, what: str = "branch") -> None:
    """Refuses names git would refuse as a ref, and any that could pass for an option."""
    if not name or name == "@" or _BAD_REF_PART.search(name):
        raise GitError(f"not a valid git {what} name: {name!r}")


def _check_sha(sha: str) -> str:
    if not _SHA.fullmatch(sha):
        raise GitError(f"not a commit or object id: {sha!r}")
    return sha


def _is_local(url: str) -> bool:
    if _SCHEME.match(url):
        return False
    colon, slash = url.find(":"), url.find("/")
    return colon < 0 or (0 <= slash < colon)  # "host:path" is scp-like ssh


def _secrets(credentials: Credentials | None) -> list[str]:
    if credentials is None or not credentials.token:
        return []
    token = credentials.token
    return [token, _basic(token), *token.split(":", 1)[1:]]


def _basic(token: str) -> str:
    return base64.b64encode(token.encode()).decode("ascii")


# -- the environment of a git process ---------------------------------------------------


def git_env(credentials: Credentials | None = None) -> dict[str, str]:
    """The environment every git process gets: ours, cleaned, plus credentials."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _INHERITED_GIT_VARS
        and not k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_", "HEADWATER_"))
    }
    env.update(
        LC_ALL="C",
        GIT_TERMINAL_PROMPT="0",
        GIT_LITERAL_PATHSPECS="1",
    )
    config = list(_REFUSED_PROTOCOL_CONFIG)
    if credentials is not None and credentials.token:
        config += [("credential.helper", ""), ("http.extraHeader", _auth_header(credentials.token))]
    if credentials is not None and credentials.ssh_key_file is not None:
        env["GIT_SSH_COMMAND"] = _ssh_command(credentials.ssh_key_file)
        env["GIT_SSH_VARIANT"] = "ssh"
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for n, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{n}"] = key
        env[f"GIT_CONFIG_VALUE_{n}"] = value
    return env


def _auth_header(token: str) -> str:
    if any(c in token for c in "\r\n\0"):
        raise GitError("the git token contains a line break; check the token setting")
    if ":" in token:
        return f"Authorization: Basic {_basic(token)}"
    return f"Authorization: Bearer {token}"


def _ssh_command(key_file: Path) -> str:
    # git hands GIT_SSH_COMMAND to a shell, so the path is quoted.
    if not key_file.is_file():
        raise GitError(f"the SSH key file {key_file} does not exist or is not a file")
    key = shlex.quote(str(key_file.absolute()))
    options = "-o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o BatchMode=yes"
    return f"ssh -i {key} {options}"


# -- running git ------------------------------------------------------------------------


_Stream = int | IO[bytes]


def _spawn(
    argv: Sequence[str], env: dict[str, str], stdin: _Stream, stdout: _Stream, stderr: _Stream
) -> subprocess.Popen[bytes]:
    """Starts git in a process group of its own, so a timeout can end its helpers too."""
    try:
        return subprocess.Popen(
            list(argv), stdin=stdin, stdout=stdout, stderr=stderr, env=env, start_new_session=True
        )
    except OSError as exc:
        raise GitError(f"cannot run git ({argv[0]}): {exc.strerror}") from None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kills git and every helper it started (they share its process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _collect_helpers(pgid: int) -> None:
    """Collect the killed helpers of a killed git (its group) that became our children.

    They do when this process is a child subreaper (the process runner makes the daemon
    one); uncollected, each would stay in the process table. Waits for group `pgid` only:
    nothing another `Popen` waits for is in it.
    """
    deadline = time.monotonic() + STOP_GRACE
    while True:
        try:
            pid, _ = os.waitpid(-pgid, os.WNOHANG)
        except ChildProcessError:
            return  # none of the group is (or is any longer) our child
        if pid == 0:
            if time.monotonic() > deadline:
                return
            time.sleep(COLLECT_POLL_SECONDS)  # KILLed: gone in a moment


class _Processes:
    """The git processes of one mirror that run now, so `Mirror.close()` can end them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._ended: set[subprocess.Popen[bytes]] = set()

    def spawn(
        self, argv: Sequence[str], env: dict[str, str], stdin: _Stream, stdout: _Stream,
        stderr: _Stream,
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        with self._lock:  # so `end_all` never misses one that is starting
            proc = _spawn(argv, env, stdin, stdout, stderr)
            self._running.add(proc)
        return proc

    def done(self, proc: subprocess.Popen[bytes]) -> bool:
        """Forget `proc`, which has ended; whether `end_all` ended it."""
        with self._lock:
            self._running.discard(proc)
            ended = proc in self._ended
            self._ended.discard(proc)
        if ended:
            _collect_helpers(proc.pid)
        return ended

    def end_all(self) -> None:
        """Kill every process that runs now (its caller then raises a GitError)."""
        with self._lock:
            procs = list(self._running)
            self._ended.update(procs)
        for proc in procs:
            _kill(proc)


class _Watchdog:
    """Kills a process that is still running after `timeout` seconds."""

    def __init__(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        self.fired = False
        self._proc = proc
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        _kill(self._proc)

    def cancel(self) -> None:
        self._timer.cancel()


def _stderr_summary(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    text = "; ".join(line for line in lines if line)
    if len(text) > MAX_ERROR_CHARS:
        text = "…" + text[-MAX_ERROR_CHARS:]
    return text or "no message from git"


# -- the persistent cat-file process ----------------------------------------------------


class _Died(Exception):
    """The cat-file process ended in the middle of a request."""


@dataclass(frozen=True)
class _Object:
    name: bytes  # what was asked for
    oid: str | None  # None when missing or ambiguous
    kind: str  # blob, tree, commit, tag; or "missing", "ambiguous"
    data: bytes


class _CatFile:
    """One long-lived `git cat-file --batch`, shared by threads, restarted when it dies."""

    def __init__(self, git_dir: Path, env: dict[str, str], timeout: float) -> None:
        self._argv = ["git", f"--git-dir={git_dir}", "cat-file", "--batch"]
        self._git_dir, self._env, self._timeout = git_dir, env, timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def get(self, names: Sequence[bytes]) -> list[_Object]:
        with self._lock:
            try:
                return self._get(names)
            except _Died:
                self._stop()  # killed or crashed between calls: one fresh process, once
            try:
                return self._get(names)
            except _Died:
                self._stop()
                raise GitError(f"git cat-file in {self._git_dir} {self._why_dead()}") from None

    def _why_dead(self) -> str:
        if not (self._git_dir / "HEAD").is_file():
            return "failed: the mirror does not exist yet (nothing was fetched)"
        return "stopped unexpectedly (is the mirror intact? `git fsck` tells)"

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _get(self, names: Sequence[bytes]) -> list[_Object]:
        proc = self._running()
        watchdog = _Watchdog(proc, self._timeout)
        try:
            return [obj for chunk in _chunks(names) for obj in self._ask(proc, chunk)]
        except _Died:
            if watchdog.fired:
                self._stop()
                raise GitError(f"git cat-file timed out after {self._timeout:g}s") from None
            raise
        finally:
            watchdog.cancel()

    def _ask(self, proc: subprocess.Popen[bytes], names: Sequence[bytes]) -> list[_Object]:
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(b"".join(name + b"\n" for name in names))
            proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise _Died from None
        return [_read_object(proc.stdout, name) for name in names]

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._proc = _spawn(
            self._argv, self._env, subprocess.PIPE, subprocess.PIPE, subprocess.DEVNULL
        )
        log.debug("started git cat-file --batch", extra={"pid": self._proc.pid})
        return self._proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # git cat-file ends at end of input
            proc.wait(STOP_GRACE)
        except (OSError, subprocess.TimeoutExpired):
            _kill(proc)
            proc.wait()
            _collect_helpers(proc.pid)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def _chunks(names: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    start, size = 0, 0
    for end, name in enumerate(names):
        if size + len(name) + 1 > BATCH_REQUEST_BYTES and end > start:
            yield names[start:end]
            start, size = end, 0
        size += len(name) + 1
    if start < len(names):
        yield names[start:]


def _read_object(stdout: IO[bytes], name: bytes) -> _Object:
    header = stdout.readline()
    if not header.endswith(b"\n"):
        raise _Died
    if header.endswith((b" missing\n", b" ambiguous\n")):
        return _Object(name, None, header.rsplit(b" ", 1)[1].strip().decode(), b"")
    oid, kind, size = header.split()
    data = stdout.read(int(size) + 1)
    if len(data) != int(size) + 1:
        raise _Died
    return _Object(name, oid.decode("ascii"), kind.decode("ascii"), data[:-1])


# -- parsing git's output -----------------------------------------------------------------


def _path(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _zero_is_none(value: str) -> str | None:
    """git writes an absent blob or mode as zeros."""
    return None if not value.strip("0") else value


_STATUS: dict[str, Literal["A", "M", "D"]] = {"A": "A", "M": "M", "D": "D", "T": "M"}


def parse_raw_diff(out: bytes) -> list[Change]:
    """Parses `git diff-tree -r -z --no-renames` output."""
    tokens = out.split(b"\0")
    changes = []
    for i in range(0, len(tokens) - 1, 2):
        old_mode, new_mode, old_oid, new_oid, status = tokens[i][1:].decode("ascii").split(" ")
        if status not in _STATUS:
            raise GitError(f"git diff-tree reported an unexpected status {status!r}")
        changes.append(
            Change(
                status=_STATUS[status],
                path=_path(tokens[i + 1]),
                old_blob=_zero_is_none(old_oid),
                new_blob=_zero_is_none(new_oid),
                old_mode=_zero_is_none(old_mode),
                new_mode=_zero_is_none(new_mode),
            )
        )
    return changes


def parse_tree(out: bytes) -> list[TreeEntry]:
    """Parses `git ls-tree -r -z -l` output."""
    entries = []
    for token in out.split(b"\0"):
        if not token:
            continue
        meta, _, path = token.partition(b"\t")
        mode, _kind, oid, size = meta.decode("ascii").split()
        entries.append(TreeEntry(_path(path), oid, mode, 0 if size == "-" else int(size)))
    return entries


def parse_commit(sha: str, raw: bytes) -> Commit:
    """Parses a raw commit object as `git cat-file` prints it."""
    head, _, body = raw.partition(b"\n\n")
    parents: list[str] = []
    author, encoding = b"", "utf-8"
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")  # continuation lines start with a space
        if key == b"parent":
            parents.append(value.decode("ascii"))
        elif key == b"author":
            author = value
        elif key == b"encoding":
            encoding = value.decode("ascii", "replace")
    ident, date = _split_ident(author)
    return Commit(
        sha=sha,
        author=_decode(ident, encoding),
        date=date,
        message=_decode(body, encoding).rstrip("\n"),
        parents=tuple(parents),
    )


def _split_ident(ident: bytes) -> tuple[bytes, float]:
    """`Name <email> 1700000000 +0100` -> (`Name <email>`, 1700000000.0)."""
    parts = ident.rsplit(b" ", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0], float(parts[1])
    return ident, 0.0


def _decode(raw: bytes, encoding: str) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    return raw.decode(encoding, "replace")


def _pathspec(prefix: str) -> list[str]:
    prefix = prefix.strip().removeprefix("./").lstrip("/")
    return [] if prefix in ("", ".") else ["--", prefix]


# -- the mirror -------------------------------------------------------------------------


class Mirror:
    """A bare mirror of one branch of a remote, kept in the data directory.

    The fetched head lives at `refs/remotes/origin/<branch>`; `keep()` pins commits
    under `refs/headwater/`. Reading methods are safe to call from several threads;
    `ensure`, `fetch` and `keep` are meant for the one sync loop.
    """

    def __init__(
        self,
        path: Path,
        url: str,
        branch: str,
        credentials: Credentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        check_url(url)
        check_ref_name(branch)
        self.path = path.absolute()
        self.url = str(Path(url).absolute()) if _is_local(url) else url
        self.branch = branch
        self.timeout = timeout
        self._secrets = _secrets(credentials)
        self._has_credentials = credentials is not None and credentials != Credentials()
        self._env = git_env(credentials)
        self._git_dir = f"--git-dir={self.path}"
        self._batch = _CatFile(self.path, self._env, timeout)
        self._processes = _Processes()
        self._ready = False
        self._read_only = False

    @classmethod
    def read_only(cls, git_dir: Path, timeout: float = DEFAULT_TIMEOUT) -> Mirror:
        """Reads an existing repository (a working clone's `.git`, for `plan`) without
        changing it: `ensure`, `remote_head`, `fetch` and `keep` refuse."""
        mirror = cls(git_dir, str(git_dir), "HEAD", timeout=timeout)
        mirror._read_only = True
        return mirror

    @property
    def ref(self) -> str:
        """Where the fetched branch head is kept in the mirror."""
        return f"refs/remotes/origin/{self.branch}"

    @property
    def batch_pid(self) -> int | None:
        """The process id of the running `git cat-file --batch`, if one runs."""
        return self._batch.pid

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Ends every git process of the mirror: the cat-file process, and any command
        in flight (a fetch that waits on the network), whose call then raises a
        `GitError`. A later call starts new ones."""
        self._processes.end_all()
        self._batch.close()

    # -- remote ---------------------------------------------------------------------

    def ensure(self) -> None:
        """Creates the bare repository if missing and points its `origin` at the URL."""
        self._refuse_if_read_only("set up")
        if not (self.path / "HEAD").is_file() or not (self.path / "objects").is_dir():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._git(["init", "--bare", "--quiet", str(self.path)], "git init of the mirror")
        self._clear_stale_locks()
        self._git(["config", "remote.origin.url", self.url], "setting the mirror's remote")
        refspec = f"+refs/heads/{self.branch}:{self.ref}"
        self._git(["config", "remote.origin.fetch", refspec], "setting the mirror's refspec")
        self._ready = True

    def remote_head(self) -> str | None:
        """The branch's head on the remote (`git ls-remote`); None if there is no such branch."""
        self._ensure_once()
        want = f"refs/heads/{self.branch}"
        out = self._git(["ls-remote", self.url, want], f"git ls-remote of {self._where()}")
        for line in out.stdout.decode("ascii", "replace").splitlines():
            sha, _, name = line.partition("\t")
            if name == want:
                return sha
        return None

    def fetch(self) -> str:
        """Fetches the branch (forced, full history) into `ref`; returns its head."""
        self._ensure_once()
        # Forced updates are found with is_ancestor(); git's own check costs a history walk.
        args = ["-c", "advice.fetchShowForcedUpdates=false", "fetch", "--no-show-forced-updates"]
        args += ["--quiet", "--no-tags", "--force", "--no-write-fetch-head"]
        args += [self.url, f"+refs/heads/{self.branch}:{self.ref}"]
        result = self._git(args, f"git fetch of {self._where()}", ok=None)
        if result.returncode != 0:
            if b"couldn't find remote ref" in result.stderr:
                raise GitError(f"branch '{self.branch}' does not exist in {self._where_url()}")
            raise self._failure(f"git fetch of {self._where()}", result.stderr)
        self._batch.close()  # a fresh cat-file sees the new packs and refs for certain
        head = self.head()
        if head is None:
            raise GitError(f"git fetch of {self._where()} left no {self.ref} in the mirror")
        return head

    def head(self) -> str | None:
        """The fetched head in the mirror, or None before the first fetch."""
        if not (self.path / "HEAD").is_file():
            return None
        args = ["rev-parse", "--verify", "--quiet", f"{self.ref}^{{commit}}"]
        result = self._git(args, "git rev-parse", ok=(0, 1))
        return result.stdout.decode("ascii").strip() or None

    # -- history ----------------------------------------------------------------------

    def commit(self, sha: str) -> Commit:
        """The commit `sha` (a full or unambiguous short id)."""
        return self._commits([sha])[sha]

    def is_ancestor(self, old: str, new: str) -> bool:
        """Whether `old` is in the history of `new` (False after a force-push dropped it)."""
        args = ["merge-base", "--is-ancestor", _check_sha(old), _check_sha(new)]
        return self._git(args, "git merge-base --is-ancestor", ok=(0, 1)).returncode == 0

    def exists(self, sha: str) -> bool:
        """Whether the commit is (still) in the mirror."""
        if not _SHA.fullmatch(sha):
            return False
        obj = self._batch.get([f"{sha}^{{commit}}".encode()])[0]
        return obj.kind == "commit"

    def resolve(self, ref: str) -> str:
        """The full sha of a commit named by a sha, a short sha or a ref in the mirror."""
        if not ref or ref.startswith("-") or any(c in ref for c in "\r\n\0"):
            raise GitError(f"not a valid commit name: {ref!r}")
        args = ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"]
        result = self._git(args, "git rev-parse", ok=None)
        if result.returncode == 0:
            return result.stdout.decode("ascii").strip()
        why = "is ambiguous" if b"ambiguous" in result.stderr else "does not name a commit"
        raise GitError(f"{ref!r} {why} in the mirror of {self._where_url()}")

    def keep(self, sha: str, name: str = "deployed") -> None:
        """Points `refs/headwater/<name>` at `sha`, so garbage collection keeps it."""
        check_ref_name(name, "keep ref")
        self._refuse_if_read_only("keep a commit in")
        args = ["update-ref", f"refs/headwater/{name}", _check_sha(sha)]
        self._git(args, f"keeping commit {sha} as refs/headwater/{name}")

    # -- trees and files --------------------------------------------------------------

    def diff(self, old: str, new: str, prefix: str = "flows/") -> list[Change]:
        """Files under `prefix` that differ between two commits (renames are D + A)."""
        if old == new:
            return []
        args = ["diff-tree", "-r", "-z", "--no-renames", _check_sha(old), _check_sha(new)]
        return parse_raw_diff(self._git(args + _pathspec(prefix), "git diff-tree").stdout)

    def tree(self, sha: str, prefix: str = "flows/") -> list[TreeEntry]:
        """Every file under `prefix` at a commit, with its blob, mode and size."""
        args = ["ls-tree", "-r", "-z", "-l", "--full-tree", _check_sha(sha)]
        return parse_tree(self._git(args + _pathspec(prefix), "git ls-tree").stdout)

    def read_blobs(self, blobs: Iterable[str]) -> dict[str, bytes]:
        """The contents of blobs by id, read through the one `cat-file --batch` process."""
        names = [_check_sha(blob).encode("ascii") for blob in dict.fromkeys(blobs)]
        if not names:
            return {}
        contents: dict[str, bytes] = {}
        for obj in self._batch.get(names):
            if obj.kind != "blob":
                raise GitError(f"blob {obj.name.decode()} is {obj.kind} in the mirror")
            contents[obj.name.decode("ascii")] = obj.data
        return contents

    def read_file(self, sha: str, path: str) -> bytes | None:
        """A file's contents at a commit (e.g. `.headwaterignore`); None if it is not there."""
        path = path.lstrip("/")
        if not path or any(c in path for c in "\r\n\0"):
            return None
        name = f"{_check_sha(sha)}:{path}".encode("utf-8", "surrogateescape")
        obj = self._batch.get([name])[0]
        return obj.data if obj.kind == "blob" else None

    def last_commits(self, old: str | None, new: str, paths: Iterable[str]) -> dict[str, Commit]:
        """For each path, the last commit in `old..new` (all of `new`'s history when `old`
        is None) that touched it.

        One `git log` over the range, limited to the paths' common folder, read as it
        streams and stopped once every path is credited. A path that no commit in the
        range shows (changed only by a merge, say) is credited to `new`.
        """
        wanted = {p.encode("utf-8", "surrogateescape") for p in paths}
        if not wanted:
            return {}
        span = f"{_check_sha(old)}..{_check_sha(new)}" if old else _check_sha(new)
        args = ["log", "-z", "--name-only", "--no-renames", "--format=%x00%H", span]
        args += _pathspec(_path(os.path.commonpath([p.rpartition(b"/")[0] for p in wanted])))
        with contextlib.closing(self._tokens(args, "git log")) as tokens:
            credited = _credit(tokens, wanted)
        for path in wanted - credited.keys():
            credited[path] = new
        commits = self._commits(list(set(credited.values())))
        return {_path(path): commits[sha] for path, sha in credited.items()}

    # -- plumbing ---------------------------------------------------------------------

    def _clear_stale_locks(self) -> None:
        """Removes lock files a killed git left behind (a timeout, a crash of the daemon).

        Only one sync loop uses a mirror (the data directory is locked), so a lock found
        when it starts, or after it killed its own git, is stale. Left in place, it would
        fail every later fetch.
        """
        locks = [self.path / "packed-refs.lock", self.path / "config.lock"]
        locks += (self.path / "refs").rglob("*.lock")
        for lock in locks:
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
                log.warning("removed a stale git lock file", extra={"lock": str(lock)})

    def _refuse_if_read_only(self, action: str) -> None:
        if self._read_only:
            raise GitError(f"cannot {action} {self.path}: it is opened read-only")

    def _ensure_once(self) -> None:
        if not self._ready:
            self.ensure()

    def _where_url(self) -> str:
        return scrub(self.url, self._secrets)

    def _where(self) -> str:
        return f"branch '{self.branch}' from {self._where_url()}"

    def _commits(self, shas: Sequence[str]) -> dict[str, Commit]:
        names = [f"{_check_sha(sha)}^{{commit}}".encode("ascii") for sha in shas]
        commits: dict[str, Commit] = {}
        for sha, obj in zip(shas, self._batch.get(names), strict=True):
            if obj.oid is None:
                raise GitError(f"commit {sha} is {obj.kind} in the mirror of {self._where_url()}")
            commits[sha] = parse_commit(obj.oid, obj.data)
        return commits

    def _git(
        self, args: list[str], what: str, ok: tuple[int, ...] | None = (0,)
    ) -> subprocess.CompletedProcess[bytes]:
        """Runs git in the mirror; an exit code outside `ok` (None: any) is a GitError."""
        argv = ["git", self._git_dir, *args]
        proc = self._processes.spawn(
            argv, self._env, subprocess.DEVNULL, subprocess.PIPE, subprocess.PIPE
        )
        try:
            stdout, stderr = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=STOP_GRACE)
            _collect_helpers(proc.pid)
            self._clear_stale_locks()
            raise GitError(
                f"{scrub(what, self._secrets)} timed out after {self.timeout:g}s"
            ) from None
        finally:
            closed = self._processes.done(proc)
        if closed:
            raise GitError(f"{scrub(what, self._secrets)} was stopped: the mirror was closed")
        if ok is not None and proc.returncode not in ok:
            raise self._failure(what, stderr)
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)

    def _tokens(self, args: list[str], what: str) -> Generator[bytes, None, None]:
        """Yields a git command's NUL-separated output as it arrives; stops git when the
        caller stops early."""
        with tempfile.TemporaryFile() as errors:
            argv = ["git", self._git_dir, *args]
            proc = self._processes.spawn(
                argv, self._env, subprocess.DEVNULL, subprocess.PIPE, errors
            )
            assert proc.stdout is not None
            watchdog, finished = _Watchdog(proc, self.timeout), False
            try:
                rest = b""
                while chunk := os.read(proc.stdout.fileno(), 1 << 16):
                    *tokens, rest = (rest + chunk).split(b"\0")
                    yield from tokens
                finished = True
            finally:
                watchdog.cancel()
                if not finished:
                    _kill(proc)
                proc.stdout.close()
                code = proc.wait()
                closed = self._processes.done(proc)
                if not finished or watchdog.fired:
                    _collect_helpers(proc.pid)
            if closed:
                raise GitError(f"{what} was stopped: the mirror was closed")
            if watchdog.fired:
                raise GitError(f"{what} timed out after {self.timeout:g}s")
            if code != 0:
                errors.seek(0)
                raise self._failure(what, errors.read())

    def _failure(self, what: str, stderr: bytes) -> GitError:
        detail = _stderr_summary(stderr)
        message = f"{what} failed: {detail}"
        if any(sign in detail.lower() for sign in _AUTH_SIGNS):
            message += (
                " (the remote refused the credentials: check the token or SSH key setting)"
                if self._has_credentials
                else " (the remote asks for credentials: set the token or SSH key setting)"
            )
        return GitError(scrub(message, self._secrets))


def _credit(tokens: Iterator[bytes], wanted: set[bytes]) -> dict[bytes, str]:
    """Reads `git log -z --name-only --format=%x00%H` tokens: an empty token comes before
    each commit id, and the first name after an id starts with a newline."""
    credited: dict[bytes, str] = {}
    sha, expect_sha, first_name = "", False, False
    for token in tokens:
        if expect_sha:
            sha, expect_sha, first_name = token.decode("ascii"), False, True
        elif not token:
            expect_sha = True
        else:
            name = token[1:] if first_name and token.startswith(b"\n") else token
            first_name = False
            if name in wanted and name not in credited:
                credited[name] = sha
                if len(credited) == len(wanted):
                    break
    return credited
