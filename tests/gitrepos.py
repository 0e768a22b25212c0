"""Real git repositories for tests: a bare "remote", a working clone, and an HTTP server.

Import as `from gitrepos import ...` (the `tests/` folder is on `sys.path` during a
pytest run, like `fake_task_context`). Everything runs the `git` command with a fixed
identity and without the user's or the system's git configuration.

    remote = make_remote(tmp_path / "remote.git")
    work = WorkingClone.create(tmp_path / "work", remote)
    work.write("flows/team/etl.yaml", "id: etl\\n")
    sha = work.commit("Add etl", author=("Ada", "ada@example.com"))
    work.push()
    with GitHttpServer(tmp_path, token="s3cret") as server:
        url = server.url("remote.git")
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

BRANCH = "main"
AUTHOR = ("Test Author", "author@example.com")
FIXED_DATE = 1_700_000_000  # commits made without a date get this one, plus a step each


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for git that ignores the machine's configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
        GIT_AUTHOR_NAME=AUTHOR[0],
        GIT_AUTHOR_EMAIL=AUTHOR[1],
        GIT_COMMITTER_NAME=AUTHOR[0],
        GIT_COMMITTER_EMAIL=AUTHOR[1],
    )
    env.update(extra or {})
    return env


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Runs git and returns its output, stripped; raises with git's stderr on failure."""
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=git_env(env), capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def make_remote(path: Path, branch: str = BRANCH) -> Path:
    """A new, empty bare repository standing in for the remote."""
    git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(path))
    return path


class WorkingClone:
    """A working repository whose `origin` is a bare remote: write, commit, push."""

    def __init__(self, path: Path, branch: str = BRANCH) -> None:
        self.path = path
        self.branch = branch
        self._clock = FIXED_DATE

    @classmethod
    def create(cls, path: Path, remote: Path | None = None, branch: str = BRANCH) -> WorkingClone:
        git("init", "--quiet", f"--initial-branch={branch}", str(path))
        if remote is not None:
            git("remote", "add", "origin", str(remote), cwd=path)
        return cls(path, branch)

    def git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        return git(*args, cwd=self.path, env=env)

    def write(self, path: str, content: str | bytes) -> None:
        target = self.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        data = content.encode() if isinstance(content, str) else content
        target.write_bytes(data)

    def write_many(self, files: Mapping[str, str | bytes]) -> None:
        for path, content in files.items():
            self.write(path, content)

    def remove(self, path: str) -> None:
        target = self.path / path
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()

    def symlink(self, path: str, target: str) -> None:
        link = self.path / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    def gitlink(self, path: str, sha: str) -> None:
        """Records a submodule entry (mode 160000) at `path` pointing at commit `sha`."""
        (self.path / path).mkdir(parents=True, exist_ok=True)  # as an unpopulated submodule
        self.git("update-index", "--add", "--cacheinfo", f"160000,{sha},{path}")

    def commit(
        self,
        message: str,
        author: tuple[str, str] = AUTHOR,
        date: int | None = None,
    ) -> str:
        """Commits everything in the working tree; returns the new commit's sha."""
        self.git("add", "--all")
        when = f"{self._next_date(date)} +0000"
        env = {
            "GIT_AUTHOR_NAME": author[0],
            "GIT_AUTHOR_EMAIL": author[1],
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_DATE": when,
        }
        self.git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", message, env=env)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def push(self, force: bool = False, branch: str | None = None) -> None:
        ref = f"HEAD:refs/heads/{branch or self.branch}"
        self.git("push", "--quiet", *(["--force"] if force else []), "origin", ref)

    def reset_hard(self, ref: str) -> None:
        """Moves the branch back (for a force-push that drops commits)."""
        self.git("reset", "--quiet", "--hard", ref)

    def revert(self, sha: str, date: int | None = None) -> str:
        when = f"{self._next_date(date)} +0000"
        env = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        self.git("revert", "--no-edit", sha, env=env)
        return self.head()

    def bulk_commit(
        self, files: Mapping[str, bytes], message: str = "bulk", checkout: bool = False
    ) -> str:
        """Commits many files on top of HEAD at once with `git fast-import` (fast for 10k+).

        Writing 10,000 files into the working tree takes seconds, so it is left alone
        unless `checkout`: push afterwards, but do not `commit()` on top without it.
        """
        parent = self.git("rev-parse", "--verify", "--quiet", "HEAD") if self._has_head() else ""
        stream = io.BytesIO()
        when = self._next_date(None)
        stream.write(f"commit refs/heads/{self.branch}\n".encode())
        stream.write(f"committer {AUTHOR[0]} <{AUTHOR[1]}> {when} +0000\n".encode())
        stream.write(f"data {len(message.encode())}\n{message}\n".encode())
        if parent:
            stream.write(f"from {parent}\n".encode())
        for path, data in files.items():
            stream.write(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
        subprocess.run(
            ["git", "fast-import", "--quiet"],
            cwd=self.path,
            env=git_env(),
            input=stream.getvalue(),
            check=True,
            timeout=120,
        )
        if checkout:
            self.git("reset", "--quiet", "--hard", self.branch)
        return self.head()

    def _has_head(self) -> bool:
        result = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
            cwd=self.path,
            env=git_env(),
            capture_output=True,
        )
        return result.returncode == 0

    def _next_date(self, date: int | None) -> int:
        self._clock = date if date is not None else self._clock + 60
        return self._clock


# -- serving repositories over HTTP -------------------------------------------------------


def http_backend() -> str:
    return str(Path(git("--exec-path")) / "git-http-backend")


class GitHttpServer:
    """Serves the bare repositories under `root` with `git http-backend` on 127.0.0.1.

    With `token`, every request needs `Authorization: Bearer <token>`; with `basic`
    (user, password), HTTP Basic with those. Without the right header the answer is 401.
    `requests` records (method, path, had-authorization) for each request.
    """

    def __init__(
        self, root: Path, token: str | None = None, basic: tuple[str, str] | None = None
    ) -> None:
        self.root = root
        self.accepted: set[str] = set()
        if token is not None:
            self.accepted.add(f"Bearer {token}")
        if basic is not None:
            pair = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
            self.accepted.add(f"Basic {pair}")
        self.requests: list[tuple[str, str, bool]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, repo: str) -> str:
        return f"http://127.0.0.1:{self.port}/{repo}"

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def authorised(self, header: str | None) -> bool:
        return not self.accepted or header in self.accepted


def _handler_for(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    backend = http_backend()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet tests

        def _serve(self) -> None:
            header = self.headers.get("Authorization")
            server.requests.append((self.command, self.path, header is not None))
            if not server.authorised(header):
                self._send(401, {"WWW-Authenticate": 'Basic realm="git"'}, b"unauthorised\n")
                return
            result = subprocess.run(
                [backend], env=self._cgi_env(), input=self._body(), capture_output=True, timeout=60
            )
            head, sep, body = result.stdout.partition(b"\r\n\r\n")
            if not sep:
                head, sep, body = result.stdout.partition(b"\n\n")
            status, headers = 200, {}
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers[name] = value.strip()
            self._send(status, headers, body)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return _read_chunked(self.rfile)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _cgi_env(self) -> dict[str, str]:
            parts = urlsplit(self.path)
            env = git_env(
                {
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": parts.path,
                    "QUERY_STRING": parts.query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "REMOTE_ADDR": self.client_address[0],
                    "REMOTE_USER": "test" if server.accepted else "",
                }
            )
            for name, value in self.headers.items():
                key = "HTTP_" + name.upper().replace("-", "_")
                if key not in ("HTTP_AUTHORIZATION", "HTTP_TRANSFER_ENCODING"):
                    env[key] = value
            return env

        def _send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _read_chunked(stream: io.BufferedIOBase) -> bytes:
    body = bytearray()
    while size := int(stream.readline().split(b";")[0].strip() or b"0", 16):
        body += stream.read(size)
        stream.readline()  # the CRLF after each chunk
    while stream.readline().strip():  # trailers
        pass
    return bytes(body)


@contextmanager
def silent_server() -> Iterator[str]:
    """An HTTP URL whose server accepts connections and never answers (for timeouts)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/never.git"
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()


def closed_port_url() -> str:
    """An HTTP URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/nothing.git"
