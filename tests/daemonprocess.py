"""`headwater up` as a real process, and the repositories it deploys, for tests.

`RunningDaemon` starts `python -m headwater.daemon.cli up` on a repository (through
tests/killpoints.py when it is to stop at a kill point), learns its port, waits for
`/readyz`, and is a small client of its HTTP API; `daemons` ends every process a test
started; `new_repos` makes a bare remote and a working clone that pushes to it. Used by
the e2e and security tiers.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gitrepos import WorkingClone, make_remote
from killpoints import Killpoint, command
from waiting import wait_until

TOKEN = "e2e-api-token"
SECRET = "e2e-webhook-secret"
START_TIMEOUT = 30.0  # seconds for a daemon to listen and finish its first sync
WAIT_TIMEOUT = 15.0  # seconds for anything a test waits for (a deploy, an execution)
STOP_TIMEOUT = 15.0  # seconds a SIGTERM may take when nothing is running
QUIET = 0.5  # seconds in which a refused or suspended push shows it changes nothing (a sync
# of these small repositories takes a few tens of milliseconds)
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
T = TypeVar("T")


def flow(namespace: str, flow_id: str, message: str = "hi", extra: str = "") -> str:
    return (
        f"id: {flow_id}\nnamespace: {namespace}\ntasks:\n"
        f"  - id: say\n    type: core.log.Log\n    message: {message}\n{extra}"
    )


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def daemon_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without HEADWATER_*, git or proxy settings, plus the test's secrets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HEADWATER_", "GIT_")) and k.lower() not in PROXY_VARIABLES
    }
    env.update(
        HEADWATER_TOKEN=TOKEN,
        HEADWATER_WEBHOOK_SECRET=SECRET,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
    )
    env.update(extra or {})
    return env


def headwater(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "headwater.daemon.cli", *args]
    return subprocess.run(
        command, env=daemon_env(env), cwd=cwd, capture_output=True, text=True, timeout=60
    )


# -- a daemon in a process of its own ---------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any
    seconds: float


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RunningDaemon:
    """`headwater up` as a subprocess, and a small client of its HTTP API."""

    def __init__(
        self,
        repo: str,
        data_dir: Path,
        log: Path,
        poll: float = 0,
        watch: bool = False,
        env: Mapping[str, str] | None = None,
        db: str | None = None,
        killpoint: Killpoint | None = None,
    ) -> None:
        self.repo = repo
        self.data_dir = data_dir
        self.log = log
        self.poll = poll
        self.db = db
        self.env = {"HEADWATER_WATCH": "true" if watch else "false", **(env or {})}
        self.killpoint = killpoint
        """Where the process stops to be killed (tests/killpoints.py), if anywhere."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    # -- process --------------------------------------------------------------------
    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process (its own session, so a test can end all it started)."""
        args = ["up", "--repo", self.repo, "--data-dir", str(self.data_dir), "--port", "0"]
        args += ["--poll-interval", str(self.poll)]
        args += ["--db", self.db] if self.db else []
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        cli = "headwater.daemon.cli"
        launch = [sys.executable, "-m", cli, *args]
        if self.killpoint is not None:
            launch = command(self.killpoint, cli, *args)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                launch,
                env=daemon_env(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.proc

    def start(self, timeout: float = START_TIMEOUT, ready: bool = True) -> RunningDaemon:
        """Start, learn the port from the log, and (`ready`) wait until /readyz answers 200."""
        self.spawn()
        found = wait_until(self._port_or_exit, timeout, "the daemon to listen")
        assert isinstance(found, int), f"the daemon exited with {found[1]}:\n{self.output()}"
        self.port = found
        if ready:
            wait_until(self.ready, timeout, "/readyz to answer 200")
        return self

    def _port_or_exit(self) -> int | tuple[str, int] | None:
        match = re.search(r"serving on http://[^:\s]+:(\d+)", self.output())
        if match:
            return int(match[1])
        code = self.proc.poll() if self.proc else None
        return ("exited", code) if code is not None else None

    def output(self) -> str:
        """What this run of the process wrote (stdout and stderr)."""
        data = self.log.read_bytes() if self.log.exists() else b""
        return data[self._log_start :].decode("utf-8", "replace")

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited ({self.proc.returncode}):\n{self.output()}")
        try:
            return self.call("GET", "/readyz").status == 200
        except OSError:
            return False

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit code (the test fails if it takes longer than `timeout`)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit {timeout} s after SIGTERM:\n{self.output()}") from None

    def kill(self) -> None:
        """SIGKILL the daemon itself (its children are left, as after a crash)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def cleanup(self) -> None:
        """End every process this daemon's session still has (children left by a kill)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    # -- HTTP -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        started = time.monotonic()
        try:
            with _NO_PROXY.open(request, timeout=30) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, data = error.code, error.read()
        seconds = time.monotonic() - started
        return Answer(status, json.loads(data) if data else None, seconds)

    def get(self, path: str) -> Any:
        answer = self.call("GET", path)
        assert answer.status == 200, f"GET {path}: {answer.status} {answer.body}"
        return answer.body

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Answer:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        return self.call("POST", path, json.dumps(body or {}).encode(), headers)

    def webhook(
        self,
        after: str | None = None,
        delivery: str | None = None,
        secret: str = SECRET,
        ref: str = "refs/heads/main",
        signature: str | None = None,
    ) -> Answer:
        """A GitHub push notification, signed like GitHub signs it."""
        body = json.dumps({"ref": ref, "after": after or "0" * 40}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": signature if signature is not None else sign(body, secret),
            "User-Agent": "GitHub-Hookshot/e2e",
        }
        return self.call("POST", "/api/v1/git/webhook", body, headers)

    # -- what is deployed -----------------------------------------------------------
    def sync_status(self) -> dict[str, Any]:
        return dict(self.get("/api/v1/sync"))

    def syncs(self) -> list[dict[str, Any]]:
        """Every recorded sync attempt, oldest first."""
        return list(reversed(self.get("/api/v1/syncs?size=100")["results"]))

    def flows(self) -> dict[str, tuple[int, str]]:
        """Deployed flows: `namespace.id` -> (revision, commit sha)."""
        found = self.get("/api/v1/flows/search?size=100")["results"]
        return {f"{f['namespace']}.{f['id']}": (f["revision"], f["commit"]["sha"]) for f in found}

    def revisions(self, namespace: str, flow_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/api/v1/flows/{namespace}/{flow_id}/revisions"))

    def wait_attempt(self, commit: str, timeout: float = WAIT_TIMEOUT) -> dict[str, Any]:
        """The finished sync attempt that tried `commit` (waits for it)."""

        def finished() -> dict[str, Any] | None:
            for attempt in reversed(self.syncs()):
                if attempt["toCommit"] == commit and attempt["result"] != "Running":
                    return attempt
            return None

        return wait_until(finished, timeout, f"a sync attempt of {commit[:8]}")

    def wait_deployed(self, commit: str, timeout: float = WAIT_TIMEOUT) -> dict[str, Any]:
        return wait_until(
            lambda: (s := self.sync_status())["deployedCommit"] == commit and s,
            timeout,
            f"commit {commit[:8]} to be deployed",
        )


@dataclass
class Repos:
    """A bare remote and a working clone that pushes to it."""

    root: Path
    remote: Path
    clone: WorkingClone

    def push(
        self, files: Mapping[str, str], message: str = "change", remove: tuple[str, ...] = ()
    ) -> str:
        self.clone.write_many(files)
        for path in remove:
            self.clone.remove(path)
        sha = self.clone.commit(message)
        self.clone.push()
        return sha


def new_repos(root: Path) -> Repos:
    remote = make_remote(root / "remote.git")
    return Repos(root, remote, WorkingClone.create(root / "work", remote))


DaemonFactory = Callable[..., RunningDaemon]


@contextlib.contextmanager
def daemons(root: Path) -> Iterator[DaemonFactory]:
    """Start daemons (`repo`, data dir `name`); every process they started ends at the end."""
    started: list[RunningDaemon] = []

    def start(repo: str, name: str = "data", run: bool = True, **options: Any) -> RunningDaemon:
        daemon = RunningDaemon(repo, root / name, root / f"{name}.log", **options)
        started.append(daemon)
        return daemon.start() if run else daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.cleanup()
