"""What the web layer may ask of the daemon: a narrow, typed seam.

The Flask app (headwater.web) is given an object with these members and knows
nothing else of the daemon's insides; tests give it a real daemon on a temporary
data directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from headwater.daemon.store.store import Row, Store
from headwater.daemon.sync import SyncOutcome


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


class Services(Protocol):
    store: Store
    web: WebSettings

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
    ) -> Row:
        """Create an execution of the deployed flow.

        Raises FlowNotFound (no such deployed flow) or InputsRefused (every input
        problem; nothing is created).
        """
        ...

    def ready(self) -> tuple[bool, str]:
        """(ready, why): the store answers and the first sync has run."""
        ...
