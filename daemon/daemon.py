"""`headwater up`: sync, scheduler, executor, workers and the HTTP server in one process.

`Daemon(settings)` builds the parts for one data directory; `start()` starts them:
the engine (executor and workers), the scheduler (told of each deploy), the sync loop
(poll with jitter, webhook hints, a watch on a local repository, all coalesced into
one sync at a time), and the embedded production WSGI server. `stop()` (SIGTERM)
stops taking work, lets running task runs finish within the grace period, and closes
everything.
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import random
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from headwater.daemon.engine.containers import all_of
from headwater.daemon.engine.containers import deployment_check as container_check
from headwater.daemon.engine.engine import Engine, EngineSettings
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.engine.logs import LogLimits
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.git import Commit, Credentials, GitError, Mirror
from headwater.daemon.reconcile import validation_pool
from headwater.daemon.services import WebSettings
from headwater.daemon.settings import HTTP_THREADS, MIN_TOKEN_CHARS, POLL_JITTER, Settings
from headwater.daemon.store.store import Row
from headwater.daemon.sync import Syncer, SyncOutcome
from headwater.daemon.triggers.files import FileTriggers, deployment_check
from headwater.daemon.triggers.scheduler import Scheduler
from headwater.daemon.triggers.webhook import WebhookCall, Webhooks

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 600.0  # fetch errors retry with backoff up to this
# A webhook or watch hint this soon after the last sync began waits out the rest, and the
# hints arriving meanwhile join it: a burst of pushes makes a few syncs, not one per push,
# while a lone push still deploys at once.
HINT_SPACING_SECONDS = 0.2
HINT_CAUSES = ("webhook", "watch")
MAX_HINT_BACKOFF_SECONDS = 30.0  # after failed fetches, hints wait up to this between syncs
NAMESPACE_FILE_CACHE = 256  # (namespace, commit) listings kept in memory
DEMO_REPOSITORY = "demo-repo"
DAEMON_LOCK_KEY = 0x48656164  # the advisory lock a daemon holds on its PostgreSQL database
REGULAR_FILE_MODES = ("100644", "100755")  # not symlinks, not submodules
SESSION_KEY_FILE = "session.key"  # signs page sessions when no session secret is set


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data_dir = settings.data_dir.resolve()
        _check_listen(settings)
        self._database_claim = _claim_database(settings.db)
        self.engine = Engine(
            EngineSettings(
                data_dir=data_dir,
                db_url=settings.db,
                workers=settings.workers,
                secrets_file=settings.secrets_file,
                default_runner=settings.default_runner,
                docker=settings.docker_settings(),
                task_user=settings.task_user,
                log_limits=LogLimits(settings.log_max_lines, settings.log_max_bytes),
            ),
            namespace_files=self.namespace_files,
        )
        self.store = self.engine.store
        self.storage = self.engine.storage
        self.webhooks = Webhooks(
            self.store, self.engine.flows, self.engine.renderer, self.engine.start_execution
        )
        self.repository = settings.repo or str(_demo_repository(data_dir))
        credentials = Credentials(token=settings.git_token, ssh_key_file=settings.git_ssh_key)
        self.mirror = Mirror(data_dir / "mirror.git", self.repository, settings.branch, credentials)
        self.pool = validation_pool()
        self.syncer = Syncer(
            self.store,
            self.mirror,
            settings.flows_dir,
            settings.allow_empty,
            pool=self.pool,
            check=all_of(
                deployment_check(settings.file_trigger_dirs),
                container_check(settings.docker_settings()),
            ),
            secrets=self.engine.secrets.is_set,
        )
        self.file_triggers = FileTriggers(self.engine, settings.file_trigger_dirs)
        self.scheduler = Scheduler(self.store, self.engine.executor)
        self.syncer.deployed.append(self.scheduler.deployed)
        self.engine.executor.ended.append(self.scheduler.ended)
        self.syncer.deployed.append(self._reload_file_triggers)
        self.syncer.deployed.append(self.engine.flow_triggers.refresh)
        self.web = WebSettings(
            repository=self.repository,
            branch=settings.branch,
            api_token=settings.token,
            webhook_secret=settings.webhook_secret,
            read_only=settings.read_only,
            read_requires_token=settings.read_requires_token,
            session_secret=settings.session_secret,
            session_key_file=data_dir / SESSION_KEY_FILE,
            allowed_hosts=_allowed_hosts(settings),
        )
        self._wanted = threading.Event()
        self._cause = "manual"
        self._stop = threading.Event()
        self._synced_once = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._observer: Any = None
        self._files: OrderedDict[tuple[str, str], dict[str, bytes]] = OrderedDict()
        self._files_lock = threading.Lock()

    # -- services for the web layer --------------------------------------------------------
    def request_sync(self, cause: str) -> None:
        self._cause = cause
        self._wanted.set()

    def sync_now(self, to: str | None = None, timeout: float = 60.0) -> SyncOutcome:
        try:
            return self.syncer.sync("pin" if to else "manual", to)
        finally:
            _settle_heap()

    def suspend(self) -> None:
        self.syncer.suspend()

    def resume(self) -> None:
        self.syncer.resume()
        self.request_sync("manual")

    def start_execution(
        self,
        namespace: str,
        flow_id: str,
        inputs: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        runs: list[Row] | None = None,
    ) -> Row:
        """Start a flow; given `runs`, the row is as committed and `runs` gets its task runs."""
        request = ExecutionRequest(
            namespace, flow_id, inputs=dict(inputs), labels=dict(labels or {})
        )
        return self.engine.start_execution(request, runs)

    def fire_webhook(self, namespace: str, flow_id: str, key: str, call: WebhookCall) -> Row | None:
        return self.webhooks.fire(namespace, flow_id, key, call)

    def backfill(self, namespace: str, flow_id: str, trigger_id: str, start: str, end: str) -> Row:
        return self.scheduler.backfill(namespace, flow_id, trigger_id, start, end)

    def commit_info(self, sha: str) -> Commit | None:
        try:
            return self.mirror.commit(sha)
        except GitError:
            return None

    def kill_execution(self, execution_id: str) -> Row:
        return self.engine.control.kill(execution_id)

    def restart_execution(self, execution_id: str) -> Row:
        return self.engine.control.restart(execution_id)

    def replay_execution(
        self,
        execution_id: str,
        task_run_id: str | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> Row:
        return self.engine.control.replay(execution_id, task_run_id, inputs)

    def resume_execution(self, execution_id: str, inputs: Mapping[str, Any] | None = None) -> Row:
        return self.engine.control.resume(execution_id, inputs)

    def open_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return self.engine.sealer.open_all(inputs)

    def secret_is_set(self, name: str) -> bool:
        return self.engine.secrets.is_set(name)

    def first_sync_done(self) -> bool:
        """Whether the sync at start has ended (deployed, or failed and said why)."""
        return self._synced_once.is_set()

    def ready(self) -> tuple[bool, str]:
        try:
            with self.store.read() as tx:
                tx.execution("-")
        except Exception as exc:  # the store is down: not ready, and say why
            return False, f"store unreachable: {type(exc).__name__}"
        try:  # a daemon that cannot record what it is asked to do is not ready
            self.store.probe_write()
        except Exception:
            failure = self.store.health.failure
            return False, failure.reason if failure else "the store cannot be written"
        if not self._synced_once.is_set():
            return False, "the first sync has not finished"
        return True, "ready"

    # -- namespace files for tasks --------------------------------------------------------
    def namespace_files(self, namespace: str, commit: str | None) -> Mapping[str, bytes]:
        """A namespace's `_files/` as of `commit` (the execution's revision's commit)."""
        if commit is None:
            return {}
        key = (namespace, commit)
        with self._files_lock:
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
        prefix = f"{self.settings.flows_dir}/{namespace.replace('.', '/')}/_files/"
        entries = [e for e in self.mirror.tree(commit, prefix) if e.mode in REGULAR_FILE_MODES]
        blobs = self.mirror.read_blobs(e.blob for e in entries)
        files = {e.path[len(prefix) :]: blobs[e.blob] for e in entries if e.path.startswith(prefix)}
        with self._files_lock:
            self._files[key] = files
            while len(self._files) > NAMESPACE_FILE_CACHE:
                self._files.popitem(last=False)
        return files

    # -- running -------------------------------------------------------------------------
    def start(self) -> None:
        """Start every part; the port is taken first, so a busy port fails before anything runs."""
        server = self._bind_http()
        self.mirror.ensure()
        self.engine.start(remove_orphans=False)  # after the first sync: see _sync_loop
        self.file_triggers.start()
        self.scheduler.start()
        self._spawn(self._sync_loop, "sync")
        self._start_watch()
        self._server = server
        self._spawn(self._serve_http, "http")
        log.info("serving on http://%s:%s", self.settings.host, self.port)

    def _reload_file_triggers(self, _outcome: SyncOutcome) -> None:
        try:
            self.file_triggers.reload()
        except Exception:  # the deploy stands; the next deploy or restart loads them again
            log.exception("file triggers: reload after the deploy failed")

    def _serve_http(self) -> None:
        try:
            self._server.run()
        except OSError:
            # `stop()` closes the listening socket under waitress's select loop, which then
            # fails on the closed descriptor: the expected end of serving, not an error.
            if not self._stop.is_set():
                raise

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _sync_loop(self) -> None:
        last_start = time.monotonic()
        try:
            if self.syncer.close_interrupted():
                log.warning("a sync was interrupted when the daemon last stopped; trying again")
            self.syncer.recheck_secrets()  # the secrets are read anew by this process
        except Exception:  # the store is down: the startup sync reports it
            log.exception("cannot read the sync history")
        self._run_sync("startup")
        self._synced_once.set()
        self.engine.remove_orphans_soon()
        failures = 0
        next_poll = self._next_poll(0)
        while not self._stop.is_set():
            timeout = None if next_poll is None else max(0.0, next_poll - time.monotonic())
            wanted = self._wanted.wait(timeout)
            if wanted and self._cause in HINT_CAUSES:
                spacing = last_start + _hint_spacing(failures) - time.monotonic()
                self._stop.wait(max(0.0, spacing))
            if self._stop.is_set():
                return
            self._wanted.clear()
            cause = self._cause if wanted else "poll"
            if cause == "poll" and not self._remote_moved():
                next_poll = self._next_poll(0)
                continue
            if self._stop.is_set():
                return  # stopping ended the ls-remote above: no fetch after it
            last_start = time.monotonic()
            outcome = self._run_sync(cause)
            failures = failures + 1 if outcome.result == "FetchFailed" else 0
            next_poll = self._next_poll(failures)

    def _run_sync(self, cause: str) -> SyncOutcome:
        try:
            return self.syncer.sync(cause)
        except Exception as exc:  # a database error: retried by the loop with backoff
            log.exception("sync failed")
            return SyncOutcome("FetchFailed", message=str(exc))
        finally:
            _settle_heap()

    def _remote_moved(self) -> bool:
        """The cheap check before a fetch: has the branch head changed?"""
        try:
            head = self.mirror.remote_head()
        except GitError:
            return True  # let the sync record the fetch error
        state = self.syncer.state()
        return head is not None and head not in (
            state.get("branch_head"),
            state.get("deployed_commit"),
        )

    def _next_poll(self, failures: int) -> float | None:
        interval = self.settings.poll_interval
        if interval <= 0:
            return None
        if failures:
            interval = min(interval * 2 ** min(failures, 10), MAX_BACKOFF_SECONDS)
        jitter = random.uniform(-POLL_JITTER, POLL_JITTER) * interval
        return time.monotonic() + interval + jitter

    def _start_watch(self) -> None:
        local = _local_repository(self.repository)
        if local is None or not self.settings.watch:
            return
        from headwater.daemon.watch import watch_refs

        self._observer = watch_refs(local, lambda: self.request_sync("watch"))

    def _bind_http(self) -> Any:
        from headwater.daemon.httpserver import HttpLimits, create_server
        from headwater.web.app import create_app

        settings = self.settings
        limits = HttpLimits(
            threads=HTTP_THREADS,
            idle_seconds=settings.http_idle_seconds,
            max_connections=settings.http_max_connections,
            per_client=settings.http_connections_per_client,
        )
        try:
            return create_server(create_app(self), settings.host, settings.port, limits)
        except OSError as exc:
            raise HeadwaterError(
                f"cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror}"
            ) from None

    @property
    def port(self) -> int:
        return int(self._server.effective_port) if self._server is not None else self.settings.port

    def stop(self, grace: float = 30.0) -> None:
        self._stop.set()
        self._wanted.set()
        if self._observer is not None:
            self._observer.stop()
        if self._server is not None:
            self._server.close()
        self.file_triggers.stop()
        self.scheduler.stop()
        self.engine.stop(grace)
        self.pool.shutdown(cancel_futures=True)
        self.mirror.close()
        if self._database_claim is not None:
            self._database_claim.close()

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        done = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal %s: stopping", signum)
            done.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            self.start()
        except HeadwaterError:
            self.stop(grace=0)
            raise
        done.wait()
        self.stop()


def _hint_spacing(failures: int) -> float:
    """How long after the last sync began a webhook or watch hint waits: a moment, and
    longer after each failed fetch in a row, so a broken remote (a deleted branch, a host
    that is down) is not fetched on every hint."""
    if not failures:
        return HINT_SPACING_SECONDS
    return float(min(HINT_SPACING_SECONDS * 2**failures, MAX_HINT_BACKOFF_SECONDS))


def _settle_heap() -> None:
    """Keep what outlives a sync out of the cyclic collector's full walks.

    A full collection walks every tracked object while holding the GIL: with the daemon's
    150,000 objects it took 70 ms and set the p95 of the status page (bench/web.py). What
    exists after a sync (modules, the app, the engine, the deployed state) lives about as
    long as the process, so it is frozen; `paused_gc` unfreezes it during a sync, hence
    after every one. Frozen objects are still freed by reference counting; cycles among
    them wait for the next sync, whose full collection here (one walk, in the sync
    thread) finds them before the heap is frozen again, so nothing piles up.
    """
    gc.collect()
    gc.freeze()


class DatabaseInUse(HeadwaterError):
    pass


def _claim_database(url: str | None) -> Connection | None:
    """One daemon per PostgreSQL database, as there is one per data directory.

    Two daemons on one database would both sync (and each take the other's running sync
    for an interrupted one): until the sync has a leader among replicas, the second one
    refuses to start. The claim is a session advisory lock held on a connection of its
    own for the daemon's life; the server lets it go when that connection ends, also
    when the process is killed. SQLite is claimed by the data directory's lock.
    """
    if not url or make_url(url).get_backend_name() != "postgresql":
        return None
    connection = create_engine(url, poolclass=NullPool).connect()
    held = connection.execute(
        text("SELECT pg_try_advisory_lock(:key)"), {"key": DAEMON_LOCK_KEY}
    ).scalar()
    connection.commit()  # the lock belongs to the session: no transaction stays open
    if not held:
        connection.close()
        shown = make_url(url).render_as_string(hide_password=True)
        raise DatabaseInUse(
            f"the database {shown} is in use by another Headwater daemon; "
            "two daemons never share one database (docs/operator.md, PostgreSQL)"
        )
    return connection


def _check_listen(settings: Settings) -> None:
    """Beyond loopback, the token is all that stands between the network and starting
    flows: it must be there, and too long to guess online."""
    if _loopback(settings.host):
        return
    if not settings.token:
        raise HeadwaterError(
            f"refusing to listen on {settings.host} without a token: anyone who can reach it "
            "could start flows; set HEADWATER_TOKEN (or listen on 127.0.0.1)"
        )
    if len(settings.token) < MIN_TOKEN_CHARS:
        raise HeadwaterError(
            f"refusing to listen on {settings.host} with a {len(settings.token)}-character "
            "token: beyond loopback the token is all that stops anyone who can reach "
            f"the port from starting flows, so it must be at least {MIN_TOKEN_CHARS} random "
            "characters, which cannot be guessed over the network (make one with "
            "`openssl rand -hex 32`)"
        )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _allowed_hosts(settings: Settings) -> tuple[str, ...]:
    """The names the web layer answers to: the configured ones, and the name it listens
    on (an address needs no entry: web/hosts.py admits every IP address)."""
    names = [name.lower() for name in settings.allowed_hosts]
    try:
        ipaddress.ip_address(settings.host)
    except ValueError:  # a name; an empty host (every address) names nothing
        names += [settings.host.lower()] if settings.host else []
    return tuple(dict.fromkeys(names))


def _local_repository(repository: str) -> Path | None:
    path = Path(repository.removeprefix("file://"))
    return path if path.exists() else None


def _demo_repository(data_dir: Path) -> Path:
    """A repository made from the template in the data directory (first start only)."""
    from headwater.daemon.template import init_repository

    path = data_dir / DEMO_REPOSITORY
    if not (path / ".git").exists():
        init_repository(path)
    return path
