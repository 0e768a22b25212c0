"""The daemon's settings: flags, `HEADWATER_*` environment variables, defaults.

One settings object, built in the CLI and handed to the parts that need it (STYLE.md).
Secrets (API token, webhook secret, git token) come from the environment or a file,
never from flags, so they do not show in `ps`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from headwater.daemon import defaults
from headwater.daemon.datadir import DEFAULT_DATA_DIR
from headwater.runners.docker_settings import DEFAULT_IMAGES, DockerSettings

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"  # loopback unless told otherwise (and then a token is required)
DEFAULT_POLL_SECONDS = 60.0  # how often the remote is checked when nothing announces a push
POLL_JITTER = 0.1  # ± this fraction of the interval, so replicas do not poll in step
HTTP_THREADS = 8  # request threads of the embedded WSGI server
HTTP_IDLE_SECONDS = 30  # a connection with no request under way is closed after this
HTTP_MAX_CONNECTIONS = 500  # open connections in all; below the usual limit of 1024 files
HTTP_CONNECTIONS_PER_CLIENT = 64  # open connections one address may hold (a browser uses 6;
# a CI job or a script may start tens of executions at once)
MIN_TOKEN_CHARS = 32  # the shortest token accepted when listening beyond loopback


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
    log_max_lines: int = Field(default=defaults.LOG_MAX_LINES, ge=1)
    """Log lines one attempt of a task run may store; the rest are counted, not stored."""
    log_max_bytes: int = Field(default=defaults.LOG_MAX_BYTES, ge=1024)
    """Bytes of log text one attempt of a task run may store (default 100 MiB)."""
    file_trigger_dirs: Annotated[list[Path], NoDecode] = []
    """Directories file triggers may read, separated by ':' like PATH; none by default."""
    allow_empty: bool = False
    """Allow a commit that deletes every deployed flow."""
    read_only: bool = False
    """The page and API show everything and change nothing (every write answers 403)."""
    read_requires_token: bool = False
    """Reading the page or the API needs the token too (sign-in on the page)."""
    session_secret: str | None = Field(default=None, repr=False)
    """Key that signs page sessions; default: one generated in the data directory."""
    allowed_hosts: Annotated[list[str], NoDecode] = []
    """Names the page and API answer to (the Host header), separated by commas, besides
    localhost, IP addresses and `host`; `.example.com` admits its subdomains."""
    http_idle_seconds: int = Field(default=HTTP_IDLE_SECONDS, ge=1)
    """Seconds an HTTP connection may stay open with no request under way."""
    http_max_connections: int = Field(default=HTTP_MAX_CONNECTIONS, ge=1)
    """Open HTTP connections in all; beyond it new ones wait in the kernel's queue."""
    http_connections_per_client: int = Field(default=HTTP_CONNECTIONS_PER_CLIENT, ge=1)
    """Open HTTP connections one client address may hold; raise it behind a reverse proxy."""
    task_user: str | None = None
    """User that process tasks run as (recommended in production; the daemon must be root)."""
    # Containers (docs/runners.md): the Docker socket is root on its host.
    default_runner: Literal["process", "docker"] = "process"
    """Where script tasks without a taskRunner run."""
    docker_host: str | None = None
    """Docker engine URL; default: DOCKER_HOST, else the local socket."""
    docker_image_shell: str = DEFAULT_IMAGES["shell"]
    """Image of shell tasks that name none."""
    docker_image_python: str = DEFAULT_IMAGES["python"]
    docker_image_node: str = DEFAULT_IMAGES["node"]
    docker_volumes: Annotated[list[Path], NoDecode] = []
    """Host directories tasks may mount with `volumes`, separated by ':'; none by default."""
    docker_network: bool = True
    """Whether containers may use the network (false: every container gets networkMode none)."""
    docker_max_containers: int = Field(default=4, ge=1)
    """Containers this daemon runs at once; more container tasks wait for a slot."""
    docker_files: Literal["copy", "mount"] = "copy"
    """How a working directory reaches its container: copied through the API, or bind-mounted."""

    def docker_settings(self) -> DockerSettings:
        """The Docker runner's part of the settings."""
        return DockerSettings(
            host=self.docker_host,
            images={
                "shell": self.docker_image_shell,
                "python": self.docker_image_python,
                "node": self.docker_image_node,
            },
            allowed_volumes=tuple(self.docker_volumes),
            network=self.docker_network,
            max_containers=self.docker_max_containers,
            files=self.docker_files,
        )

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("file_trigger_dirs", "docker_volumes", mode="before")
    @classmethod
    def _split_dirs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value
