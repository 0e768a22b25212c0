"""`EngineServices`: the web layer's `Services` seam over a real engine, git left out.

The Flask app is tested through this second implementation of the seam: a thin
adapter over a real Engine (SQLite on a temporary data directory, worker threads,
real processes), exactly as the daemon wires the execution verbs. Only the git side
differs: a sync is recorded with the store's own verbs, a requested sync is remembered
instead of fetched, and commits are described from a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater.daemon.engine.engine import Engine
from headwater.daemon.engine.executor import ExecutionRequest
from headwater.daemon.git import Commit
from headwater.daemon.services import WebSettings
from headwater.daemon.store.store import Row, Store
from headwater.daemon.sync import SyncOutcome

DEFAULT_HEAD = "1" * 40  # what a sync deploys when the test set no branch head


class EngineServices:
    def __init__(self, engine: Engine, web: WebSettings) -> None:
        self.engine = engine
        self.store: Store = engine.store
        self.storage = engine.storage
        self.web = web
        self.sync_requests: list[str] = []
        """The causes of the syncs the web layer asked for, in order."""
        self.readiness = (True, "ready")
        self.commits: dict[str, Commit] = {}
        """What `commit_info` knows: sha -> commit."""

    # -- sync, recorded rather than fetched -------------------------------------------
    def request_sync(self, cause: str) -> None:
        self.sync_requests.append(cause)

    def sync_now(self, to: str | None = None, timeout: float = 60.0) -> SyncOutcome:
        """Deploy the branch head (or `to`, pinned) with no flow changes."""
        now = self.engine.clock()
        with self.store.write() as tx:
            state = tx.sync_state()
            head = to or state.get("branch_head") or DEFAULT_HEAD
            sync_id = tx.insert_sync(
                {
                    "started_at": now,
                    "finished_at": now + 0.25,
                    "cause": "pin" if to else "manual",
                    "from_commit": state.get("deployed_commit"),
                    "to_commit": head,
                    "result": "Succeeded",
                    "forced": False,
                }
            )
            values: Row = {"deployed_commit": head, "deployed_at": now}
            values["pinned_commit" if to else "branch_head"] = head
            tx.update_sync_state(values)
        return SyncOutcome("Succeeded", sync_id, state.get("deployed_commit"), head)

    def suspend(self) -> None:
        with self.store.write() as tx:
            tx.update_sync_state({"suspended": True})

    def resume(self) -> None:
        with self.store.write() as tx:
            tx.update_sync_state({"suspended": False, "pinned_commit": None})

    def commit_info(self, sha: str) -> Commit | None:
        return self.commits.get(sha)

    def open_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return self.engine.sealer.open_all(inputs)

    def ready(self) -> tuple[bool, str]:
        return self.readiness

    def secret_is_set(self, name: str) -> bool:
        return self.engine.secrets.is_set(name)

    # -- executions, as the daemon wires them ----------------------------------------
    def start_execution(
        self,
        namespace: str,
        flow_id: str,
        inputs: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        runs: list[Row] | None = None,
    ) -> Row:
        request = ExecutionRequest(
            namespace, flow_id, inputs=dict(inputs), labels=dict(labels or {})
        )
        return self.engine.start_execution(request, runs)

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
