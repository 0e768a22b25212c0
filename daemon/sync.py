"""Sync: keep the deployed flows equal to a commit of the tracked branch.

`Syncer.sync(cause)` resolves the branch head itself (a webhook is only a hint),
and when it differs from the deployed commit, reconciles (reconcile.py) and applies
the result in one transaction: every changed flow gets a revision credited to the
last commit that touched it, deleted flows a final deleted revision, and the deployed
commit moves. An invalid commit changes nothing, is recorded with every error, and is
not tried again until a new commit arrives or someone asks. A deploy that names secrets
this daemon does not have still deploys, with a warning for each (secretrefs.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from headwater.daemon import defaults
from headwater.daemon.errors import Diagnostic, HeadwaterError, Position
from headwater.daemon.flow.repository import paused_gc
from headwater.daemon.git import Commit, GitError, Mirror
from headwater.daemon.reconcile import DeploymentCheck, FlowChange, Reconciliation, plan_commit
from headwater.daemon.secretrefs import IsSet, missing_secrets, still_missing
from headwater.daemon.store.store import Row, Store, Tx

log = logging.getLogger(__name__)

INTERRUPTED_SCAN = 100  # recent attempts searched for ones a dead process left Running
MANUAL_CAUSES = ("manual", "pin", "startup")
"""Causes that try a commit even when it failed before, or while sync is suspended."""


@dataclass
class SyncOutcome:
    result: str
    """Succeeded, Failed, NoChange, Skipped (suspended or pinned), FetchFailed."""
    sync_id: int | None = None
    from_commit: str | None = None
    to_commit: str | None = None
    added: int = 0
    updated: int = 0
    deleted: int = 0
    errors: list[Diagnostic] = field(default_factory=list)
    message: str | None = None
    warnings: list[Row] = field(default_factory=list)
    """Of a deploy: every deployed flow's secret that is not set (secretrefs.warning_json)."""


class Syncer:
    def __init__(
        self,
        store: Store,
        mirror: Mirror,
        flows_dir: str = defaults.DEFAULT_FLOWS_DIR,
        allow_empty: bool = False,
        clock: Callable[[], float] = time.time,
        pool: ProcessPoolExecutor | None = None,
        check: DeploymentCheck | None = None,
        secrets: IsSet | None = None,
    ) -> None:
        self.store = store
        self.check = check
        """Problems that depend on this deployment's settings; a commit with any is refused."""
        self.secrets = secrets
        """Whether a secret is set here; a deploy warns of the names its flows read that are not."""
        self.mirror = mirror
        self.flows_dir = flows_dir
        self.allow_empty = allow_empty
        self.clock = clock
        self.pool = pool
        self._lock = threading.Lock()  # one sync at a time in this process
        self.deployed: list[Callable[[SyncOutcome], None]] = []
        """Called after a commit deployed (triggers follow the deployed revisions)."""

    # -- steering ------------------------------------------------------------------------
    def suspend(self) -> None:
        with self.store.write() as tx:
            tx.update_sync_state({"suspended": True})

    def resume(self) -> None:
        """Automatic sync on again; a pin is released."""
        with self.store.write() as tx:
            tx.update_sync_state({"suspended": False, "pinned_commit": None})

    def state(self) -> Row:
        """The sync state (read without the write lock, except the very first time)."""
        with self.store.read() as tx:
            found = tx.existing_sync_state()
        if found is not None:
            return found
        with self.store.write() as tx:
            return tx.sync_state()

    def close_interrupted(self) -> int:
        """Record the attempts a process that died mid-sync left Running, as interrupted.

        Call it before the first sync of a process that holds the sync role (the data
        directory's lock): no other sync can be running then. Nothing of such an attempt
        was deployed (a deploy commits in one transaction), and the next sync tries its
        commit again.
        """
        with self.store.write() as tx:
            running = [
                row for row in tx.syncs(limit=INTERRUPTED_SCAN) if row["result"] == "Running"
            ]
            for row in running:
                tx.update_sync(
                    row["id"],
                    {
                        "result": "Failed",
                        "finished_at": self.clock(),
                        "message": "interrupted: the daemon stopped before this sync finished; "
                        "nothing of it was deployed",
                    },
                )
        return len(running)

    def recheck_secrets(self) -> list[Row]:
        """Drop the warnings of secrets set since they were made (call it at start: the
        secrets are read once per process); the warnings left."""
        if self.secrets is None:
            return []
        with self.store.write() as tx:
            before = tx.sync_state().get("warnings") or []
            left = still_missing(before, self.secrets, set())
            if len(left) != len(before):
                tx.update_sync_state({"warnings": left or None})
        return left

    # -- syncing -------------------------------------------------------------------------
    def sync(self, cause: str, to: str | None = None) -> SyncOutcome:
        """One sync attempt; `to` deploys that commit and pins it.

        The collector is paused for the attempt: a big deploy makes millions of objects
        that live until it ends, and a collection in the middle would walk them all while
        holding the GIL (half a second for 10,000 flows), stalling the executor's threads.
        They are freed by reference counting when the attempt returns.
        """
        with self._lock, paused_gc():
            return self._sync(cause, to)

    def _sync(self, cause: str, to: str | None) -> SyncOutcome:
        state = self.state()
        if to is None and cause not in MANUAL_CAUSES:
            if state.get("suspended"):
                return SyncOutcome("Skipped", message="automatic sync is suspended")
            if state.get("pinned_commit"):
                return SyncOutcome("Skipped", message=f"pinned to {state['pinned_commit']}")
        try:
            head = self._head(to)
        except GitError as exc:
            return self._fetch_failed(state, exc)
        deployed = state.get("deployed_commit")
        if to is None and state.get("pinned_commit") and cause in MANUAL_CAUSES:
            head = state["pinned_commit"]
        if head == deployed:
            self._note_head(state, head, to)
            return SyncOutcome(
                "NoChange",
                from_commit=deployed,
                to_commit=head,
                warnings=state.get("warnings") or [],
            )
        if head == state.get("failed_commit") and cause not in MANUAL_CAUSES and to is None:
            self._note_head(state, head, to)
            return SyncOutcome(
                "NoChange",
                from_commit=deployed,
                to_commit=head,
                message="this commit failed to deploy before",
            )
        return self._deploy(cause, deployed, head, pin=to is not None)

    def _head(self, to: str | None) -> str:
        if to is None:
            return self.mirror.fetch()
        try:
            return self.mirror.resolve(to)
        except GitError:
            self.mirror.fetch()  # a commit pushed since the last fetch
            return self.mirror.resolve(to)

    def _note_head(self, state: Row, head: str, to: str | None) -> None:
        values: Row = {}
        if state.get("branch_head") != head and to is None:
            values["branch_head"] = head
        if state.get("fetch_error"):
            values.update(fetch_error=None, fetch_failures=0)
        if values:  # a poll that finds nothing new writes nothing
            with self.store.write() as tx:
                tx.update_sync_state(values)

    def _fetch_failed(self, state: Row, exc: GitError) -> SyncOutcome:
        with self.store.write() as tx:
            tx.update_sync_state(
                {
                    "fetch_error": str(exc),
                    "fetch_failures": int(state.get("fetch_failures") or 0) + 1,
                }
            )
        log.warning("fetch failed: %s", exc)
        return SyncOutcome("FetchFailed", message=str(exc))

    def _deploy(self, cause: str, deployed: str | None, head: str, pin: bool) -> SyncOutcome:
        started = self.clock()
        with self.store.write() as tx:
            sync_id = tx.insert_sync(
                {
                    "started_at": started,
                    "cause": cause,
                    "from_commit": deployed,
                    "to_commit": head,
                    "result": "Running",
                    "forced": False,
                }
            )
        try:
            with self.store.read() as tx:
                plan = plan_commit(
                    tx,
                    self.mirror,
                    head,
                    deployed,
                    self.flows_dir,
                    self.allow_empty,
                    self.pool,
                    self.check,
                )
        except (HeadwaterError, OSError) as exc:
            plan = Reconciliation(head=head, base=deployed)
            plan.errors = [Diagnostic(_position(self.flows_dir), f"sync failed: {exc}")]
        outcome = SyncOutcome(
            "Succeeded" if plan.valid else "Failed",
            sync_id,
            deployed,
            head,
            plan.count("add"),
            plan.count("update"),
            plan.count("delete"),
            plan.errors,
        )
        if plan.valid:
            # Only a sync deploys flows, so before the first success there is no history.
            first = deployed is None and all(c.action == "add" for c in plan.changes)
            outcome.warnings = self._apply(plan, sync_id, started, pin, first)
            self.mirror.keep(head)
            for callback in self.deployed:
                callback(outcome)
        else:
            self._record_failure(plan, sync_id, started, pin)
        log.info(
            "sync %s: %s %s..%s (+%d ~%d -%d, %d errors, %d warnings)",
            sync_id,
            outcome.result,
            (deployed or "-")[:8],
            head[:8],
            outcome.added,
            outcome.updated,
            outcome.deleted,
            len(outcome.errors),
            len(outcome.warnings),
        )
        for warning in outcome.warnings:
            log.warning(
                "%s:%s: %s",
                warning["path"],
                warning["line"],
                warning["message"],
                extra={"flow": f"{warning['namespace']}.{warning['flowId']}"},
            )
        return outcome

    def _record_failure(
        self, plan: Reconciliation, sync_id: int, started: float, pin: bool
    ) -> None:
        with self.store.write() as tx:
            tx.update_sync(
                sync_id,
                {
                    "result": "Failed",
                    "finished_at": self.clock(),
                    "forced": plan.forced,
                    "added": plan.count("add"),
                    "updated": plan.count("update"),
                    "deleted": plan.count("delete"),
                    "errors": [d.to_json() for d in plan.errors],
                    "message": f"{len(plan.errors)} error(s); the deployed commit stays",
                },
            )
            values: Row = {"failed_commit": plan.head, "fetch_error": None, "fetch_failures": 0}
            if not pin:
                values["branch_head"] = plan.head
            tx.update_sync_state(values)

    def _secret_warnings(self, plan: Reconciliation) -> list[Row]:
        """Warnings of the changed flows' secrets that are not set."""
        if self.secrets is None:
            return []
        return [
            warning
            for c in plan.changes
            if c.action != "delete" and c.parsed is not None
            for warning in missing_secrets(c.namespace, c.flow_id, c.parsed, self.secrets)
        ]

    def _apply(
        self, plan: Reconciliation, sync_id: int, started: float, pin: bool, first: bool
    ) -> list[Row]:
        """Write the revisions; `first`: nothing was ever deployed, so no flow has history.
        Returns the deployed flows' warnings (secrets not set)."""
        fresh_warnings = self._secret_warnings(plan)
        paths = [c.path for c in plan.changes if c.action != "delete"]
        credited = self.mirror.last_commits(plan.base, plan.head, paths) if paths else {}
        head_commit = self.mirror.commit(plan.head)
        now = self.clock()
        with self.store.write() as tx:
            known = set() if first else tx.flow_keys()
            new = [
                c
                for c in plan.changes
                if c.action == "add" and (c.namespace, c.flow_id) not in known
            ]
            revisions = [_first_revision(c, credited.get(c.path, head_commit), now) for c in new]
            references = [
                {
                    "namespace": c.namespace,
                    "flow_id": c.flow_id,
                    "ref_namespace": namespace,
                    "ref_flow_id": flow_id,
                    "kind": kind,
                }
                for c in new
                for namespace, flow_id, kind in sorted(set(c.references))
            ]
            tx.insert_new_flows(revisions, references)
            fresh = {(c.namespace, c.flow_id) for c in new}
            for change in plan.changes:
                if (change.namespace, change.flow_id) not in fresh:
                    commit = credited.get(change.path, head_commit)
                    _apply_change(tx, change, commit, now, first)
            changed = {(c.namespace, c.flow_id) for c in plan.changes}
            kept = still_missing(
                tx.sync_state().get("warnings") or [], self.secrets or _never_set, changed
            )
            warnings = sorted(kept + fresh_warnings, key=_place)
            state: Row = {
                "warnings": warnings or None,
                "deployed_commit": plan.head,
                "deployed_at": now,
                "failed_commit": None,
                "fetch_error": None,
                "fetch_failures": 0,
            }
            if pin:
                state["pinned_commit"] = plan.head
            else:
                state["branch_head"] = plan.head
            tx.update_sync_state(state)
            tx.update_sync(
                sync_id,
                {
                    "result": "Succeeded",
                    "finished_at": self.clock(),
                    "forced": plan.forced,
                    "added": plan.count("add"),
                    "updated": plan.count("update"),
                    "deleted": plan.count("delete"),
                    "errors": None,
                    "warnings": warnings or None,
                    "message": f"deployed in {self.clock() - started:.3f} s",
                },
            )
        return warnings


def _never_set(name: str) -> bool:
    return False


def _place(warning: Row) -> tuple[str, int, int, str]:
    return (warning["path"], warning["line"], warning["column"], warning["message"])


def _position(flows_dir: str) -> Position:
    return Position(flows_dir, 1, 1)


def _first_revision(change: FlowChange, commit: Commit, now: float) -> Row:
    return {
        "namespace": change.namespace,
        "flow_id": change.flow_id,
        "revision": 1,
        "source": change.source or "",
        "blob": change.blob,
        "deleted": False,
        "equals_revision": None,
        "path": change.path,
        "commit_sha": commit.sha,
        "commit_author": commit.author,
        "commit_date": commit.date,
        "commit_message": commit.message,
        "created_at": now,
    }


def _apply_change(tx: Tx, change: FlowChange, commit: Commit, now: float, first: bool) -> None:
    history = [] if first else tx.revision_blobs(change.namespace, change.flow_id)
    latest = history[0] if history else None
    number = (latest["revision"] + 1) if latest else 1
    meta = {
        "commit_sha": commit.sha,
        "commit_author": commit.author,
        "commit_date": commit.date,
        "commit_message": commit.message,
        "created_at": now,
    }
    if change.action == "delete":
        previous = tx.revision(change.namespace, change.flow_id)
        tx.insert_revision(
            {
                "namespace": change.namespace,
                "flow_id": change.flow_id,
                "revision": number,
                "source": previous["source"] if previous else "",
                "blob": None,
                "deleted": True,
                "path": None,
                **meta,
            }
        )
        tx.replace_references(change.namespace, change.flow_id, [])
        return
    if latest is not None and latest["blob"] == change.blob and not latest["deleted"]:
        tx.set_flow_path(change.namespace, change.flow_id, change.path)  # moved, not changed
        return
    equals = next(
        (h["revision"] for h in history if h["blob"] == change.blob and not h["deleted"]), None
    )
    tx.insert_revision(
        {
            "namespace": change.namespace,
            "flow_id": change.flow_id,
            "revision": number,
            "source": change.source or "",
            "blob": change.blob,
            "deleted": False,
            "equals_revision": equals,
            "path": change.path,
            **meta,
        }
    )
    if history or change.references:  # a flow without history has no references to drop
        tx.replace_references(change.namespace, change.flow_id, change.references)
