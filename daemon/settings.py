"""The daemon's settings: flags, `HEADWATER_*` environment variables, defaults.

One settings object, built in the CLI and handed to the parts that need it (STYLE.md).
Secrets (API token, webhook secret, git token) come from the environment or a file,
never from flags, so they do not show in `ps`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from headwater.daemon import defaults

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"  # loopback unless told otherwise (and then a token is required)
DEFAULT_POLL_SECONDS = 60.0  # how often the remote is checked when nothing announces a push
POLL_JITTER = 0.1  # ± this fraction of the interval, so replicas do not poll in step
DEFAULT_DATA_DIR = Path(".headwater")
HTTP_THREADS = 8  # request threads of the embedded WSGI server


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEADWATER_", extra="ignore")

    repo: str | None = None
    """URL or local path of the flows repository; none: a demo repository from the template."""
    branch: str = "main"
    flows_dir: str = defaults.DEFAULT_FLOWS_DIR
    data_dir: Path = DEFAULT_DATA_DIR
    db: str | None = None
    """Database URL; default SQLite in the data directory."""
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    poll_interval: float = DEFAULT_POLL_SECONDS
    """Seconds between polls of the remote; 0 turns polling off."""
    watch: bool = True
    """Watch a local repository for pushes (no webhook or poll needed)."""
    token: str | None = Field(default=None, repr=False)
    """Bearer token for write calls and for signing in to the page."""
    webhook_secret: str | None = Field(default=None, repr=False)
    git_token: str | None = Field(default=None, repr=False)
    """Token for an http(s) remote."""
    git_ssh_key: Path | None = None
    """Private key file for an ssh:// remote."""
    secrets_file: Path | None = None
    """File of secrets for secret('NAME'), outside git."""
    workers: int = 4
    allow_empty: bool = False
    """Allow a commit that deletes every deployed flow."""
    read_only: bool = False
