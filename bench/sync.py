"""How fast the daemon deploys a big flows repository (prints figures; not a test).

Generates a repository of N flows (default 10,000, about 3 KB each, the generator of
bench/validate.py) in 100 namespaces, plus a small two-task flow `bench.small`, in a bare
remote, then runs `headwater up` as a real process against it, served over `file://`
and over local HTTP (`git http-backend` behind the test suite's threaded server, in a
process of its own), and prints for each:

1. first sync: the deploy of every flow on a fresh data directory: the sync's own
   duration (its `syncs` row, from the fetched head to the commit of the deploy), the
   wall time from starting the process to /readyz, and peak memory: the daemon
   process's high-water mark (VmHWM) and the sampled peak PSS of its helper processes
   (validation workers, git) together;
2. push to deployed: one-file commits, each pushed and announced by a signed webhook,
   one at a time (more than the hint spacing apart); latency from `git push` returning
   to the commit of the deploy (`syncs.finished_at`), p50 and p95;
3. a poll that finds nothing new: in this process, on the daemon's data directory after
   it stopped, `Daemon._remote_moved()` (the check every poll makes: `git ls-remote` and
   a read of the sync state) and `Syncer.sync("poll")` (a fetch that finds the deployed
   head); wall and CPU time (this process plus its git children), medians;
4. the executor during the first sync of the big commit: on a fresh data directory with
   only `bench.small` deployed, the big commit is pushed and announced, and
   `bench.small` is asked for every EXECUTION_GAP seconds through the API (open loop: a
   thread per request) until the sync has finished; creation to SUCCESS (the store's
   `endDate` minus its CREATED time) and request to SUCCESS (from the moment the client
   asked), p50/p99/max.

    python bench/sync.py [--flows 10000] [--pushes 20] [--transport file|http|both]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import re
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from gitrepos import WorkingClone, make_remote  # noqa: E402
from validate import flow_text  # noqa: E402

from headwater.daemon.daemon import HINT_SPACING_SECONDS, Daemon  # noqa: E402
from headwater.daemon.settings import Settings  # noqa: E402

TOKEN = "bench-token"
SECRET = "bench-webhook-secret"
NAMESPACES = 100
EXECUTION_GAP = 0.1  # seconds between executions started during the first sync
SAMPLE_SECONDS = 0.05  # memory sampling interval of the helper processes
START_TIMEOUT = 600.0
POLL_REPEATS = 30
TARGETS = {
    "first sync": "under 20 s, under 500 MiB",
    "push to deployed": "p50 under 100 ms",
    "no-change poll": "under 20 ms",
    "executions during the first sync": "p99 under 1 s",
}
SMALL_FLOW = """id: small
namespace: bench
description: Two quick tasks, started again and again while the big sync runs.
tasks:
  - id: first
    type: core.debug.Return
    format: one
  - id: second
    type: core.log.Log
    message: two
"""
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


# -- the repository -------------------------------------------------------------------------


@dataclass
class Repository:
    root: Path
    remote: Path
    clone: WorkingClone
    small: str  # the commit with only bench.small
    big: str  # the commit with every flow
    texts: dict[str, str]  # path -> source of the generated flows
    changed: dict[str, str] = field(default_factory=dict)  # sources changed since `big`

    def reset(self) -> None:
        """The clone's branch back at the big commit (the one-file commits are dropped)."""
        self.clone.git("update-ref", f"refs/heads/{self.clone.branch}", self.big)
        self.changed.clear()

    def force(self, sha: str) -> None:
        """Point the remote's branch at `sha` (a force-push)."""
        self.clone.git("push", "--quiet", "--force", "origin", f"{sha}:refs/heads/main")

    def one_file_commit(self, n: int) -> str:
        """A commit on top of the branch that changes one flow's description."""
        path = sorted(self.texts)[(n * 7919) % len(self.texts)]
        text = self.changed.get(path, self.texts[path])
        self.changed[path] = text.replace("every night", f"every night ({n})", 1)
        return self.clone.bulk_commit({path: self.changed[path].encode()}, f"change {n}")


def make_repository(root: Path, count: int) -> Repository:
    remote = make_remote(root / "remote.git")
    clone = WorkingClone.create(root / "work", remote)
    clone.write("flows/bench/small.yaml", SMALL_FLOW)
    small = clone.commit("bench.small")
    texts = {}
    for n in range(count):
        namespace = f"company.team{n % NAMESPACES}"
        texts[f"flows/{namespace.replace('.', '/')}/flow_{n}.yaml"] = flow_text(n, namespace)
    big = clone.bulk_commit({p: t.encode() for p, t in texts.items()}, f"{count} flows")
    return Repository(root, remote, clone, small, big, texts)


# -- the daemon -------------------------------------------------------------------------------


class DaemonProcess:
    """`headwater up` in a session of its own; its log in a file."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.url, self.data_dir = url, data_dir
        self.log = data_dir.with_suffix(".log")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HEADWATER_", "GIT_")) and "proxy" not in k.lower()
        }
        env.update(
            HEADWATER_TOKEN=TOKEN,
            HEADWATER_WEBHOOK_SECRET=SECRET,
            HEADWATER_WATCH="false",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=os.devnull,
        )
        args = ["up", "--repo", url, "--data-dir", str(data_dir), "--port", "0"]
        args += ["--poll-interval", "0"]
        self.started = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "headwater.daemon.cli", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.port = self._wait_port()

    def _wait_port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = re.search(r"serving on http://[^:\s]+:(\d+)", self.log.read_text())
            if match:
                return int(match[1])
            if self.proc.poll() is not None:
                raise SystemExit(f"the daemon exited:\n{self.log.read_text()}")
            time.sleep(0.01)
        raise SystemExit("the daemon did not listen within 60 s")

    def wait_ready(self) -> float:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.call("GET", "/readyz")[0] == 200:
                return time.monotonic() - self.started
            time.sleep(0.05)
        raise SystemExit("the daemon was not ready in time")

    def call(self, method: str, path: str, body: bytes | None = None, **headers: str) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, method=method, headers=headers
        )
        try:
            with _NO_PROXY.open(request, timeout=120) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")
        except OSError:
            return 0, None

    def webhook(self, after: str) -> float:
        """Announce a push like GitHub does; the seconds the answer took."""
        body = json.dumps({"ref": "refs/heads/main", "after": after}).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        started = time.monotonic()
        status, answer = self.call(
            "POST",
            "/api/v1/git/webhook",
            body,
            **{
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": signature,
            },
        )
        if status != 202:
            raise SystemExit(f"webhook refused: {status} {answer}")
        return time.monotonic() - started

    def start_small(self) -> str:
        status, answer = self.call(
            "POST",
            "/api/v1/executions/bench/small",
            b"{}",
            **{"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        )
        if status != 200:
            raise SystemExit(f"cannot start bench.small: {status} {answer}")
        return str(answer["id"])

    def helpers(self) -> list[int]:
        """Processes of the daemon's session other than the daemon (workers, git)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.proc.pid:
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.proc.pid:  # the session id
                found.append(int(entry.name))
        return found

    def hwm_mib(self) -> float:
        return _status_kib(self.proc.pid, "VmHWM") / 1024

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages (forked workers share most) counted once."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _status_kib(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@contextmanager
def helper_memory(daemon: DaemonProcess) -> Iterator[list[float]]:
    """Samples the summed RSS of the daemon's helper processes; yields [peak MiB]."""
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            total = sum(_pss_kib(pid) for pid in daemon.helpers()) / 1024
            peak[0] = max(peak[0], total)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


class Database:
    """The daemon's SQLite database, read-only (as an operator would look)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "headwater.db"

    def rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        connection.row_factory = sqlite3.Row
        try:
            return connection.execute(sql, args).fetchall()
        finally:
            connection.close()

    def sync_of(self, commit: str) -> sqlite3.Row | None:
        found = self.rows(
            "SELECT * FROM syncs WHERE to_commit = ? AND result != 'Running' "
            "ORDER BY id DESC LIMIT 1",
            commit,
        )
        return found[0] if found else None

    def wait_sync(self, commit: str, poll: float = 0.005, timeout: float = 600) -> sqlite3.Row:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            row = self.sync_of(commit)
            if row is not None:
                if row["result"] != "Succeeded":
                    raise SystemExit(f"the sync of {commit[:8]} failed: {row['message']}")
                return row
            time.sleep(poll)
        raise SystemExit(f"no sync of {commit[:8]} within {timeout} s")


# -- the measurements -------------------------------------------------------------------------


@dataclass
class Figures:
    transport: str
    lines: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.lines.append(text)
        print(f"  {text}", flush=True)


def first_sync(repo: Repository, url: str, work: Path, figures: Figures) -> DaemonProcess:
    repo.force(repo.big)
    daemon = DaemonProcess(url, work / "first")
    with helper_memory(daemon) as helpers:
        ready = daemon.wait_ready()
    row = Database(daemon.data_dir).wait_sync(repo.big)
    flows = Database(daemon.data_dir).rows("SELECT count(*) AS n FROM flows")[0]["n"]
    figures.add(
        f"first sync: {row['finished_at'] - row['started_at']:.1f} s for {flows} flows "
        f"(+{row['added']}); process start to /readyz {ready:.1f} s"
    )
    figures.add(
        f"first sync memory: daemon process {daemon.hwm_mib():.0f} MiB peak (VmHWM); "
        f"its helpers (validation workers, git) {helpers[0]:.0f} MiB peak together "
        "(sampled PSS)"
    )
    return daemon


def push_latency(repo: Repository, daemon: DaemonProcess, pushes: int, figures: Figures) -> None:
    database = Database(daemon.data_dir)
    repo.reset()
    latencies, answers = [], []
    for n in range(pushes):
        sha = repo.one_file_commit(n)
        repo.clone.push()
        pushed = time.time()
        answers.append(daemon.webhook(sha))
        row = database.wait_sync(sha)
        if (row["added"], row["updated"], row["deleted"]) != (0, 1, 0):
            raise SystemExit(f"a one-file commit deployed {dict(row)}")
        latencies.append(row["finished_at"] - pushed)
        time.sleep(HINT_SPACING_SECONDS + 0.05)  # a lone push each time
    figures.add(
        f"push to deployed ({pushes} one-file commits, webhook): p50 "
        f"{ms(statistics.median(latencies))}, p95 {ms(percentile(latencies, 95))}, "
        f"max {ms(max(latencies))}; webhook answered in p50 {ms(statistics.median(answers))}"
    )


def timed(action: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds (this process and the children it waited for)."""
    walls, cpus = [], []
    for _ in range(repeats):
        before, started = _cpu(), time.perf_counter()
        action()
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu() - before)
    return statistics.median(walls), statistics.median(cpus)


def _cpu() -> float:
    """User and system CPU seconds of this process and of its finished children."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def idle_poll(url: str, data_dir: Path, figures: Figures) -> None:
    settings = Settings(repo=url, data_dir=data_dir, poll_interval=0, watch=False, port=0)
    daemon = Daemon(settings)
    database = Database(data_dir)
    try:
        before = database.rows("SELECT count(*) AS n FROM syncs")[0]["n"]
        state = [tuple(r) for r in database.rows("SELECT * FROM sync_state")]
        if daemon._remote_moved():
            raise SystemExit("the remote should not have moved")
        wall, cpu = timed(daemon._remote_moved, POLL_REPEATS)
        figures.add(
            f"no-change poll, Daemon._remote_moved() (git ls-remote + state read): "
            f"{ms(wall)} wall, {ms(cpu)} CPU (median of {POLL_REPEATS})"
        )
        results = set()
        wall, cpu = timed(lambda: results.add(daemon.syncer.sync("poll").result), POLL_REPEATS)
        figures.add(
            f"no-change poll, Syncer.sync('poll') (git fetch, nothing new): "
            f"{ms(wall)} wall, {ms(cpu)} CPU (median of {POLL_REPEATS})"
        )
        after = database.rows("SELECT count(*) AS n FROM syncs")[0]["n"]
        unchanged = [tuple(r) for r in database.rows("SELECT * FROM sync_state")] == state
        if results != {"NoChange"} or after != before or not unchanged:
            raise SystemExit(f"a poll that found nothing wrote something: {results}")
    finally:
        daemon.stop(grace=0)


def executions_during_sync(repo: Repository, url: str, work: Path, figures: Figures) -> None:
    repo.force(repo.small)
    daemon = DaemonProcess(url, work / "during")
    try:
        daemon.wait_ready()
        database = Database(daemon.data_dir)
        daemon.start_small()  # warm: the first execution pays for imports
        repo.force(repo.big)
        daemon.webhook(repo.big)
        requested: list[tuple[float, str]] = []  # (when asked, execution id)
        starters = []

        def start_one() -> None:
            asked = time.time()
            requested.append((asked, daemon.start_small()))

        # Open loop: one request every EXECUTION_GAP whether or not the last one answered.
        while database.sync_of(repo.big) is None:
            starters.append(threading.Thread(target=start_one))
            starters[-1].start()
            time.sleep(EXECUTION_GAP)
        for starter in starters:
            starter.join()
        row = database.wait_sync(repo.big)
        created, asked = _wait_executions(daemon, requested)
        figures.add(
            f"executions during the first sync ({row['finished_at'] - row['started_at']:.1f} s, "
            f"{len(created)} of bench.small, one asked every {EXECUTION_GAP:g} s): "
            f"creation to SUCCESS p50 {ms(statistics.median(created))}, "
            f"p99 {ms(percentile(created, 99))}, max {ms(max(created))}; "
            f"request to SUCCESS p50 {ms(statistics.median(asked))}, "
            f"p99 {ms(percentile(asked, 99))}, max {ms(max(asked))}"
        )
    finally:
        daemon.stop()


def _wait_executions(
    daemon: DaemonProcess, requested: list[tuple[float, str]]
) -> tuple[list[float], list[float]]:
    """Creation to SUCCESS (the store's times) and request to SUCCESS (from the client)."""
    created, asked = [], []
    for when, execution_id in requested:
        deadline = time.monotonic() + 120
        while True:
            _, row = daemon.call("GET", f"/api/v1/executions/{execution_id}")
            if row["state"]["current"] in ("SUCCESS", "WARNING", "FAILED", "KILLED"):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"execution {execution_id} did not end")
            time.sleep(0.05)
        if row["state"]["current"] != "SUCCESS":
            raise SystemExit(f"execution {execution_id} ended {row['state']['current']}")
        end = _epoch(row["state"]["endDate"])
        created.append(end - _epoch(row["state"]["histories"][0]["date"]))
        asked.append(end - when)
    return created, asked


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


HTTP_SERVER = """
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from gitrepos import GitHttpServer
with GitHttpServer(Path(sys.argv[1])) as server:
    print(server.port, flush=True)
    sys.stdin.read()
"""


@contextmanager
def served(repo: Repository, transport: str) -> Iterator[str]:
    """The remote's URL; over HTTP, `git http-backend` behind a server in a process of its
    own, so that its CPU time is not counted as this process's children's."""
    if transport == "file":
        yield f"file://{repo.remote}"
        return
    server = subprocess.Popen(
        [sys.executable, "-c", HTTP_SERVER, str(repo.root)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    try:
        yield f"http://127.0.0.1:{int(server.stdout.readline())}/{repo.remote.name}"
    finally:
        server.stdin.close()
        server.wait(30)


def run(repo: Repository, transport: str, pushes: int, work: Path) -> Figures:
    figures = Figures(transport)
    print(f"\n{transport}:", flush=True)
    with served(repo, transport) as url:
        daemon = first_sync(repo, url, work, figures)
        try:
            push_latency(repo, daemon, pushes, figures)
        finally:
            daemon.stop()
        idle_poll(url, daemon.data_dir, figures)
        executions_during_sync(repo, url, work, figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--transport", choices=["file", "http", "both"], default="both")
    args = parser.parse_args()
    transports = ["file", "http"] if args.transport == "both" else [args.transport]
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, git {_git_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="hw-bench-sync-") as tmp:
        root = Path(tmp)
        started = time.monotonic()
        repo = make_repository(root, args.flows)
        size = sum(len(t.encode()) for t in repo.texts.values()) / max(1, args.flows)
        print(
            f"repository: {args.flows} flows in {NAMESPACES} namespaces, {size:.0f} bytes a "
            f"file, generated in {time.monotonic() - started:.1f} s"
        )
        for transport in transports:
            (root / transport).mkdir()
            run(repo, transport, args.pushes, root / transport)
    print("\ntargets: " + "; ".join(f"{k} {v}" for k, v in TARGETS.items()))


def _git_version() -> str:
    out = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    return out.split()[-1] if out else "?"


if __name__ == "__main__":
    main()
