"""What a fresh `headwater` process loads: the reason its commands start fast (issue 12).

Each test runs a new interpreter and reads `sys.modules` (and which flow models have a
validator) after the command: no timing, only what was imported and built.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ONE_FILE = ROOT / "flows-repo-template" / "flows" / "tutorial" / "hello.yaml"

# What no command's --help needs: the store, the web server, containers, settings, the
# flow language (pydantic models, YAML, expressions) and the runners.
NOT_FOR_HELP = (
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "flask",
    "werkzeug",
    "waitress",
    "docker",
    "cryptography",
    "pydantic",
    "pydantic_settings",
    "yaml",
    "croniter",
    "headwater.daemon.flow",
    "headwater.daemon.expressions",
    "headwater.daemon.store",
    "headwater.daemon.engine",
    "headwater.runners",
    "headwater.web",
)
# What validating flow files does not need.
NOT_FOR_VALIDATE = (
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "flask",
    "werkzeug",
    "waitress",
    "docker",
    "cryptography",
    "pydantic_settings",
    "headwater.daemon.store",
    "headwater.daemon.engine",
    "headwater.runners",
    "headwater.web",
)


def modules_after(code: str) -> list[str]:
    """`sys.modules` of a new interpreter after `code`, with the output `code` printed."""
    script = textwrap.dedent(code) + "\nprint('\\n' + json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", f"import json, sys\n{script}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.splitlines()[-1]))


def loaded(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in packages or m.startswith(packages)]


def test_help_of_every_command_imports_only_click_and_the_cli() -> None:
    modules = modules_after(
        """
        import click
        from importlib.metadata import entry_points

        (script,) = entry_points(group="console_scripts", name="headwater")
        main = script.load()  # what the installed `headwater` script calls

        def every(group, path):
            yield path
            for name, command in getattr(group, "commands", {}).items():
                yield from every(command, [*path, name])

        for path in every(main, []):
            try:
                main.main([*path, "--help"], prog_name="headwater", standalone_mode=False)
            except SystemExit:
                pass
        """
    )
    assert "headwater.daemon.cli" in modules
    assert loaded(modules, NOT_FOR_HELP) == []


def test_validate_of_one_file_builds_no_store_web_or_runner() -> None:
    modules = modules_after(
        f"""
        from headwater.daemon.cli import main

        try:
            main.main(["validate", {str(ONE_FILE)!r}], standalone_mode=False)
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        """
    )
    assert "headwater.daemon.flow.model" in modules
    assert loaded(modules, NOT_FOR_VALIDATE) == []


def test_validate_of_a_file_without_expressions_leaves_the_expression_language_out(
    tmp_path: Path,
) -> None:
    flow = tmp_path / "plain.yaml"
    flow.write_text(
        "id: plain\nnamespace: n\ntasks:\n  - id: a\n    type: core.log.Log\n    message: hi\n"
    )
    modules = modules_after(
        f"""
        from headwater.daemon.cli import main

        try:
            main.main(["validate", {str(flow)!r}], standalone_mode=False)
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        """
    )
    assert "headwater.daemon.flow.model" in modules
    assert loaded(modules, ("headwater.daemon.expressions", "croniter", "pathspec")) == []


def test_importing_the_flow_models_builds_no_validator() -> None:
    modules = modules_after(
        """
        from pydantic import BaseModel
        from headwater.daemon.flow import model

        def subclasses(cls):
            for sub in cls.__subclasses__():
                yield sub
                yield from subclasses(sub)

        ours = [m for m in subclasses(BaseModel) if m.__module__.startswith("headwater.")]
        assert len(ours) > 50, len(ours)
        built = [m.__name__ for m in ours if m.__pydantic_complete__]
        assert built == [], built  # each model builds its validator when first used
        """
    )
    assert "headwater.daemon.flow.model" in modules


# What a daemon on SQLite loads only when a flow uses it: the Docker SDK (with requests
# and urllib3), which the leftover-container sweep after the first sync loads, and the
# PostgreSQL dialect, with a PostgreSQL store.
NOT_FOR_A_SQLITE_DAEMON_AT_START = ("docker", "requests", "urllib3", "psycopg")


def test_a_daemon_on_sqlite_starts_without_docker_or_postgresql(tmp_path: Path) -> None:
    """Everything up to the first sync (held here) runs without them."""
    script = f"""
import json, sys, threading
from headwater.daemon import sync
held = threading.Event()
real = sync.Syncer.sync
def sync_when_let(self, *args, **kwargs):
    held.wait(60)
    return real(self, *args, **kwargs)
sync.Syncer.sync = sync_when_let
from headwater.daemon.daemon import Daemon
from headwater.daemon.settings import Settings
daemon = Daemon(Settings(data_dir={str(tmp_path / "data")!r}, port=0, watch=False))
daemon.start()
at_start = sorted(sys.modules)
held.set()
daemon.stop(grace=1)
print(json.dumps(at_start))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.splitlines()[-1])
    assert loaded(modules, NOT_FOR_A_SQLITE_DAEMON_AT_START) == []
    assert "sqlalchemy.dialects.postgresql" not in modules
    assert "headwater.runners.docker" in modules  # the runner is there; its SDK is not
