"""What the web layer may ask of the daemon: a narrow, typed seam.

The Flask app (headwater.web) is given an object with these members and knows
nothing else of the daemon's insides; tests give it a real daemon on a temporary
data directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from headwater.daemon.git import Commit
from headwater.daemon.storage import LocalStorage
from headwater.daemon.store.store import Row, Store
from headwater.daemon.sync import SyncOutcome
from headwater.daemon.triggers.webhook import WebhookCall


@dataclass(frozen=True)
class WebSettings:
    """The settings the web layer needs (secrets stay in memory, never on a page)."""

    repository: str
    branch: str
    api_token: str | None = None
    """Bearer token for write calls; None means writes are open (loopback only)."""
    webhook_secret: str | None = None
    """Shared secret for git webhooks (HMAC key, or GitLab's token)."""
    max_webhook_bytes: int = 1024 * 1024
    read_only: bool = False
    read_requires_token: bool = False
    """Reading the page or the API also needs the token (a bearer token or a sign-in)."""
    session_secret: str | None = None
    """Key that signs the page's session cookie; None: read or made in `session_key_file`."""
    session_key_file: Path | None = None
    """Where a generated session key is kept (the data directory); None: one per process."""
    allowed_hosts: tuple[str, ...] = ()
    """Names the daemon answers to besides `localhost` and IP addresses (the Host header;
    web/hosts.py); `.example.com` admits its subdomains."""


class Services(Protocol):
    store: Store
    web: WebSettings
    storage: LocalStorage
    """Internal storage: the page offers output files and FILE inputs for download."""

    def commit_info(self, sha: str) -> Commit | None:
        """A commit of the tracked repository (author, date, message); None if git cannot say."""
        ...

    def request_sync(self, cause: str) -> None:
        """Ask for a sync soon (coalesced with others); returns at once."""
        ...

    def sync_now(self, to: str | None = None, timeout: float = 60.0) -> SyncOutcome:
        """Sync (or deploy and pin `to`) and return the outcome."""
        ...

    def suspend(self) -> None: ...

    def resume(self) -> None: ...

    def start_execution(
        self,
        namespace: str,
        flow_id: str,
        inputs: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        runs: list[Row] | None = None,
    ) -> Row:
        """Create an execution of the deployed flow. Given `runs`, the row returned is
        the execution as committed and `runs` gets its task runs.

        Raises FlowNotFound (no such deployed flow) or InputsRefused (every input
        problem; nothing is created).
        """
        ...

    def fire_webhook(self, namespace: str, flow_id: str, key: str, call: WebhookCall) -> Row | None:
        """Start an execution for a call to a flow's webhook URL; None when no enabled
        Webhook trigger of the deployed flow has `key` (an unknown flow too).

        Raises InputsRefused or another HeadwaterError when the trigger's inputs fail.
        """
        ...

    def backfill(self, namespace: str, flow_id: str, trigger_id: str, start: str, end: str) -> Row:
        """Queue a backfill of a Schedule trigger over [start, end] (RFC 3339 texts); a
        summary (times, first, last, perSecond).

        Raises TriggerNotFound, BackfillRunning, or BackfillError (a bad range).
        """
        ...

    def kill_execution(self, execution_id: str) -> Row:
        """Ask an execution to end KILLED (its running processes stop); its row after.

        Raises ExecutionNotFound, or ExecutionStateConflict when it has ended.
        """
        ...

    def restart_execution(self, execution_id: str) -> Row:
        """Run a FAILED or KILLED execution's failed task runs again, in place.

        Raises ExecutionNotFound, or ExecutionStateConflict for any other state.
        """
        ...

    def replay_execution(
        self,
        execution_id: str,
        task_run_id: str | None = None,
        inputs: Mapping[str, Any] | None = None,
    ) -> Row:
        """A new execution of an ended one (from `task_run_id`, with new `inputs`); the new row.

        Raises ExecutionNotFound, ExecutionStateConflict (not ended), TaskRunNotFound,
        or InputsRefused (nothing is created).
        """
        ...

    def resume_execution(self, execution_id: str, inputs: Mapping[str, Any] | None = None) -> Row:
        """Resume a PAUSED execution; its row after.

        Raises ExecutionNotFound, ExecutionStateConflict (not paused), or ResumeRefused
        (inputs given: a Pause takes none).
        """
        ...

    def ready(self) -> tuple[bool, str]:
        """(ready, why): the store answers and the first sync has run."""
        ...

    def secret_is_set(self, name: str) -> bool:
        """Whether `secret(name)` finds a value here (never the value itself)."""
        ...

    def open_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """An execution's inputs with sealed (encrypted) values opened: only for hiding
        those values wherever else they appear on a page, never for showing them."""
        ...
