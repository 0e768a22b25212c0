"""The `headwater` command: the one place the parts are built and wired together."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from headwater.daemon import defaults

# Only click and the command definitions load for `headwater --help`; each command
# imports what it needs when it runs (the flow models alone took 1.6 s, issue 12).
if TYPE_CHECKING:
    from collections.abc import Callable

    from headwater.daemon.client import Client
    from headwater.daemon.errors import Diagnostic
    from headwater.daemon.flow.validate import FlowFile
    from headwater.daemon.plan import Plan
    from headwater.daemon.progress import Waiting


SECRETS_PER_CALL = 100  # secret names asked about in one GET /api/v1/secrets (plan --server)
SERVER_KEY = "headwater.server"  # where a --server given at any level is kept (ctx.meta)


def _remember_server(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Keep a --server given before or after the command: the innermost one wins (click
    handles a group's options before its sub-command's)."""
    if value is not None:
        ctx.find_root().meta[SERVER_KEY] = value


_SERVER_HELP = (
    f"The daemon's URL (else {defaults.SERVER_VARIABLE}, else {defaults.SERVER}); "
    "also accepted before the command."
)
_SERVER = click.option(
    "--server", metavar="URL", expose_value=False, callback=_remember_server, help=_SERVER_HELP
)


_OUTPUT = click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: print the ended execution as GET /api/v1/executions/{id} answers it, "
    "alone on standard output (progress goes to standard error).",
)


def _given_server() -> str | None:
    """The --server given on the command line, wherever it was, if any."""
    given = click.get_current_context().find_root().meta.get(SERVER_KEY)
    return str(given) if given else None


def _server() -> str:
    """The daemon a command talks to: --server, else HEADWATER_SERVER, else the default."""
    return _given_server() or os.environ.get(defaults.SERVER_VARIABLE) or defaults.SERVER


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option(
    "--server",
    metavar="URL",
    expose_value=False,
    callback=_remember_server,
    help=f"The daemon's URL, for commands that talk to one (else {defaults.SERVER_VARIABLE}, "
    f"else {defaults.SERVER}). The token comes from HEADWATER_TOKEN.",
)
def main(verbose: int) -> None:
    """Headwater: a Git-native, declarative flow orchestrator."""
    import logging  # here, not at the top: `headwater --help` never needs it

    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--flows-dir",
    default=defaults.DEFAULT_FLOWS_DIR,
    show_default=True,
    help="Root folder of flows inside a repository.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Processes for large folders (default: one per CPU).",
)
def validate(paths: tuple[Path, ...], flows_dir: str, fmt: str, jobs: int | None) -> None:
    """Validate flow files or folders.

    A folder that holds a flows folder (`flows/` by default) is checked as a flows
    repository: folder = namespace, file name = id, `_files/`, no symbolic links,
    size limits, and references between flows. Errors print as
    `path:line:col: error: message`, doubts that leave a flow valid as
    `path:line:col: warning: message`. Exit 0 when valid, 1 when not, 2 on a usage error.
    """
    from headwater.daemon.errors import Diagnostic
    from headwater.daemon.flow.checkpaths import check_paths

    flows, diagnostics = check_paths(paths or (Path("."),), flows_dir, jobs or os.cpu_count() or 1)
    warnings = sorted({w for f in flows for w in f.warnings}, key=Diagnostic.sort_key)
    if fmt == "json":
        import json

        report = {
            "valid": not diagnostics,
            "flows": len(flows),
            "errors": [d.to_json() for d in diagnostics],
            "warnings": [w.to_json() for w in warnings],
        }
        click.echo(json.dumps(report, indent=2))
    else:
        for diagnostic in sorted([*diagnostics, *warnings], key=Diagnostic.sort_key):
            click.echo(str(diagnostic))
        click.echo(_summary(flows, diagnostics, warnings), err=True)
    sys.exit(1 if diagnostics else 0)


def _summary(
    flows: list[FlowFile], diagnostics: list[Diagnostic], warnings: list[Diagnostic]
) -> str:
    doubts = f"; {len(warnings)} warning(s)" if warnings else ""
    if not diagnostics:
        return f"{len(flows)} flow(s) valid{doubts}"
    files = len({d.position.path for d in diagnostics})
    return f"{len(diagnostics)} error(s) in {files} file(s); {len(flows)} flow(s) checked{doubts}"


@main.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file."
)
def schema(output: Path | None) -> None:
    """Print the JSON Schema of a flow file (for editors' YAML extensions)."""
    from headwater.daemon.flow.schema import schema_text

    text = schema_text()
    if output is None:
        click.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-i", "--input", "inputs", multiple=True, help="An input: name=value (name=@path for a file)."
)
@click.option(
    "--flows-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Root folder of flows, for subflows (default: the flows/ folder FILE is in).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the store, logs and files here (default: a temporary folder).",
)
@_OUTPUT
def run(
    file: Path,
    inputs: tuple[str, ...],
    flows_dir: Path | None,
    data_dir: Path | None,
    output: str,
) -> None:
    """Run one flow once on this machine, with live progress.

    Exit 0 when the execution ends SUCCESS or WARNING, 1 otherwise (or when its
    inputs are refused: nothing runs then). Ctrl-C kills the execution cleanly.
    `--output json` prints the ended execution as the daemon's API would.
    """
    from headwater.daemon.datadir import check_data_dir
    from headwater.daemon.engine.inputs import InputsRefused
    from headwater.daemon.errors import HeadwaterError, ValidationFailed
    from headwater.daemon.localrun import parse_input_flags, run_local

    try:
        given = parse_input_flags(inputs)
    except (ValueError, OSError) as exc:
        raise click.UsageError(str(exc)) from None
    try:
        if data_dir is not None:
            check_data_dir(data_dir)
        if output == "json":
            status = _run_for_json(file, given, flows_dir, data_dir)
        else:
            status = run_local(file, given, flows_dir, data_dir)
    except InputsRefused as exc:
        click.echo(f"inputs refused, nothing was run:\n{exc}", err=True)
        status = 1
    except ValidationFailed as exc:
        click.echo(str(exc), err=True)
        status = 1
    except HeadwaterError as exc:
        click.echo(f"error: {exc}", err=True)
        status = 1
    sys.exit(status)


def _run_for_json(
    file: Path, given: dict[str, Any], flows_dir: Path | None, data_dir: Path | None
) -> int:
    """`run --output json`: the progress on standard error, then the ended execution.

    The store outlives the run (a temporary data directory is removed only after the
    execution is read back), so the JSON is made by the API's own serializer."""
    import tempfile

    from headwater.daemon.engine.flows import parse_flow
    from headwater.daemon.localrun import run_local

    with tempfile.TemporaryDirectory(prefix="headwater-run-") as temporary:
        folder = data_dir or Path(temporary)
        flow = parse_flow(file.read_text(encoding="utf-8"), str(file))
        status = run_local(file, given, flows_dir, folder, out=sys.stderr)
        click.echo(_dumps(_last_execution(folder, flow.namespace, flow.id)))
    return status


def _last_execution(data_dir: Path, namespace: str, flow_id: str) -> dict[str, Any]:
    """The newest top-level execution of a flow in a data directory's store (the one
    `run` just ended: one `run` at a time holds a data directory), as the API shows it:
    SECRET inputs masked."""
    import time

    from headwater.daemon.engine.sealing import is_sealed
    from headwater.daemon.store.db import make_engine, sqlite_url
    from headwater.daemon.store.queries import Page, search_executions
    from headwater.daemon.store.store import Store
    from headwater.web import serialize
    from headwater.web.pages.display import HIDDEN

    db = make_engine(sqlite_url(data_dir))
    try:
        with Store(db).read() as tx:
            found = search_executions(tx, Page(size=100), namespace, flow_id).results
            row = next(row for row in found if not row.get("parent_execution_id"))
            runs = tx.task_runs(row["id"])
    finally:
        db.dispose()
    inputs = row.get("inputs") or {}
    row = {**row, "inputs": {k: HIDDEN if is_sealed(v) else v for k, v in inputs.items()}}
    return serialize.execution(row, runs, time.time())


def _dumps(value: object) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False)


@main.command()
@click.option("--repo", help="Flows repository: URL or local path (default: a demo repository).")
@click.option("--branch", help="Branch to deploy (default main).")
@click.option("--flows-dir", help="Root folder of flows in the repository (default flows).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory (default .headwater; outside the git working tree the current folder "
    "is in, if any). Inside a working tree it must be ignored by git.",
)
@click.option("--port", type=int, help="HTTP port (default 8080; 0 picks a free one).")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option(
    "--allowed-hosts",
    help="Names the page and API answer to, comma-separated, besides localhost and IP "
    "addresses (.example.com: its subdomains); other Host headers get 400.",
)
@click.option("--db", help="Database URL (default SQLite in the data directory).")
@click.option("--poll-interval", type=float, help="Seconds between polls; 0 turns polling off.")
@click.option("--workers", type=int, help="Worker threads.")
def up(**options: object) -> None:
    """Run the daemon: sync, executor, workers and the web server.

    Every option can also be set with a HEADWATER_* environment variable (HEADWATER_REPO,
    HEADWATER_PORT, …). Secrets only come from the environment: HEADWATER_TOKEN (API and
    page), HEADWATER_WEBHOOK_SECRET, HEADWATER_GIT_TOKEN.
    """
    import logging

    from headwater.daemon.daemon import Daemon
    from headwater.daemon.datadir import choose_data_dir
    from headwater.daemon.errors import HeadwaterError
    from headwater.daemon.progress import Waiting
    from headwater.daemon.settings import Settings

    given = {k: v for k, v in options.items() if v is not None}
    settings = Settings(**given)  # type: ignore[arg-type]
    explicit = "data_dir" in settings.model_fields_set  # a flag or HEADWATER_DATA_DIR
    try:
        data = choose_data_dir(settings.data_dir if explicit else None, Path.cwd())
    except HeadwaterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    settings = settings.model_copy(update={"data_dir": data.path})
    logging.getLogger("headwater").setLevel(logging.INFO)
    try:
        daemon = Daemon(settings)
    except HeadwaterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(
        f"headwater: deploying {daemon.repository} ({settings.branch}); data in {data.describe()}",
        err=True,
    )
    if data.left_behind is not None:
        click.echo(
            f"headwater: {data.left_behind} holds data of an earlier daemon, which this "
            "one does not use (it is inside the working tree): to keep it, move its "
            f"content to {data.path} while no daemon runs; never commit it",
            err=True,
        )
    try:
        with Waiting(
            f"headwater: first sync of {daemon.repository}", daemon.first_sync_done
        ) as waiting:
            for handler in logging.getLogger().handlers:  # a log line starts the line
                handler.addFilter(waiting.log_filter)
            daemon.serve_forever()
    except HeadwaterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
def init(directory: Path) -> None:
    """Create a flows repository in DIRECTORY from the template, with a first commit.

    DIRECTORY is created if missing; one that exists and is not empty is refused
    (exit 2). The repository gets example flows, CI for pull requests, a pre-commit
    hook and editor settings, committed on branch main.
    """
    import shlex

    from headwater.daemon import template

    try:
        files, sha = template.new_repository(directory)
    except template.TemplateError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2 if isinstance(exc, template.DestinationNotEmpty) else 1)
    click.echo(f"Created a flows repository in {directory} ({len(files)} files):")
    click.echo("".join(f"  {file.relative_to(directory).as_posix()}\n" for file in files), nl=False)
    author = template.commit_author(directory)
    click.echo(f"and committed them on branch {template.BRANCH}: {sha[:12]} by {author}.")
    if author.endswith(f"<{template.FALLBACK_AUTHOR[1]}>"):
        click.echo("(git knows no user here: set one, then `git commit --amend --reset-author`.)")
    steps = [
        ("headwater validate", "check every flow"),
        ("headwater run flows/tutorial/hello.yaml -i name=Ada", "run a flow once, here"),
        ("headwater up --repo .", "serve it: each commit on main deploys (data kept outside)"),
        ("git remote add origin URL && git push -u origin main", "share it"),
    ]
    width = max(len(command) for command, _ in steps) + 2
    click.echo(f"\nNext steps:\n  cd {shlex.quote(str(directory))}")
    for command, why in steps:
        click.echo(f"  {command:<{width}}# {why}")
    click.echo("README.md tells more: the layout, CI, deploys, rollbacks and secrets.")


@main.command()
@click.option("--base", help="Commit to compare with (default: merge base with the branch).")
@click.option("--head", help="Commit to deploy (default: the working tree as it is).")
@click.option(
    "--repo",
    "repo_path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The flows repository.",
)
@click.option("--branch", default="main", show_default=True, help="The tracked branch.")
@click.option("--flows-dir", default=defaults.DEFAULT_FLOWS_DIR, show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
)
@click.option(
    "--server",
    metavar="URL",
    expose_value=False,
    callback=_remember_server,
    help="Compare with what this running daemon has deployed (HEADWATER_SERVER alone does "
    "not make plan ask a daemon).",
)
def plan(
    base: str | None,
    head: str | None,
    repo_path: Path,
    branch: str,
    flows_dir: str,
    fmt: str,
) -> None:
    """Show what deploying HEAD over BASE would change, flow by flow.

    Exit 0 when HEAD would deploy, 1 when it is invalid (its errors are listed),
    2 on a usage error. `--format markdown` is meant for a pull-request comment.
    """
    from headwater.daemon.errors import HeadwaterError
    from headwater.daemon.plan import (
        check_head,
        check_repository,
        render_json,
        render_markdown,
        render_text,
        work_tree_root,
    )
    from headwater.daemon.progress import Waiting

    try:
        check_repository(repo_path.resolve())
        repo = work_tree_root(repo_path.resolve())
        if head is None or base is None:  # the working tree, or the merge base with HEAD
            check_head(repo)
    except HeadwaterError as exc:
        raise click.UsageError(str(exc)) from None
    server = _given_server()
    with Waiting(f"asking {server} what it deployed", enabled=server is not None) as waiting:
        result = _plan_with(waiting, server, repo, base, head, branch, flows_dir)
    render = {"text": render_text, "markdown": render_markdown, "json": render_json}[fmt]
    click.echo(render(result), nl=False)
    sys.exit(0 if result.valid else 1)


def _plan_with(
    waiting: Waiting,
    server: str | None,
    repo: Path,
    base: str | None,
    head: str | None,
    branch: str,
    flows_dir: str,
) -> Plan:
    """The plan of `headwater plan`; with a server, its deployed commit is the base."""
    from headwater.daemon.errors import HeadwaterError
    from headwater.daemon.git import Mirror
    from headwater.daemon.plan import default_base, make_plan, working_tree_commit
    from headwater.daemon.watch import git_dir

    status: dict[str, Any] = {}
    if server is not None:
        status = _sync_status(server)
        base = _deployed_commit(server, status)  # it must be in this clone: fetch first
    waiting.step("validating the flows")
    mirror = Mirror.read_only(git_dir(repo))
    try:
        head_sha = mirror.resolve(head) if head else working_tree_commit(repo)
        base_sha = mirror.resolve(base) if base else default_base(repo, branch)
        return make_plan(
            mirror,
            base_sha,
            head_sha,
            flows_dir,
            unset=_unset_on(server, waiting) if server is not None else None,
            deployed_warnings=status.get("warnings") or [],
        )
    except HeadwaterError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        mirror.close()


def _sync_status(server: str) -> dict[str, Any]:
    from headwater.daemon.client import Client

    status = Client(server).get("/api/v1/sync")
    return status if isinstance(status, dict) else {}


def _deployed_commit(server: str, status: dict[str, Any]) -> str:
    deployed = status.get("deployedCommit")
    if not deployed:
        raise click.ClickException(f"{server} has nothing deployed yet")
    return str(deployed)


def _unset_on(server: str, waiting: Waiting) -> Callable[[set[str]], set[str]]:
    """Asks the daemon which of some secret names it does not have (plan --server)."""
    from urllib.parse import urlencode

    from headwater.daemon.client import Client

    def unset(names: set[str]) -> set[str]:
        ordered, missing = sorted(names), set()
        waiting.step(f"asking {server} which secrets it has")
        for start in range(0, len(ordered), SECRETS_PER_CALL):
            waiting.count(start, len(ordered))
            chunk = ordered[start : start + SECRETS_PER_CALL]
            found = Client(server).get(f"/api/v1/secrets?{urlencode([('name', n) for n in chunk])}")
            missing |= {s["name"] for s in found.get("secrets", []) if not s.get("set")}
        return missing

    return unset


@main.group(invoke_without_command=True)
@click.option("--to", "to", help="Deploy this commit and hold it (a pin) until `sync resume`.")
@_SERVER
@click.pass_context
def sync(ctx: click.Context, to: str | None) -> None:
    """Ask a running daemon to sync now (or to deploy a named commit with --to).

    The token comes from HEADWATER_TOKEN. Exit 0 when the sync succeeded or found
    nothing new, 1 when the commit failed to deploy (its errors are printed).
    """
    if ctx.invoked_subcommand is not None:
        return
    from headwater.daemon.client import Client
    from headwater.daemon.progress import Waiting

    server = _server()
    with Waiting(f"waiting for {server} to sync"):
        outcome = Client(server).post("/api/v1/sync", {"to": to} if to else {})
    click.echo(
        f"{outcome.get('result')}: {outcome.get('fromCommit') or '-'} -> "
        f"{outcome.get('toCommit') or '-'} (+{outcome.get('added', 0)} "
        f"~{outcome.get('updated', 0)} -{outcome.get('deleted', 0)})"
    )
    for error in outcome.get("errors") or []:
        click.echo(f"{error['path']}:{error['line']}:{error['column']}: error: {error['message']}")
    for warning in outcome.get("warnings") or []:
        click.echo(
            f"{warning['path']}:{warning['line']}:{warning['column']}: warning: "
            f"{warning['message']}"
        )
    if outcome.get("message"):
        click.echo(outcome["message"], err=True)
    sys.exit(1 if outcome.get("result") in ("Failed", "FetchFailed") else 0)


@sync.command("suspend")
@_SERVER
def sync_suspend() -> None:
    """Turn automatic sync off (pushes are not deployed until `sync resume`)."""
    from headwater.daemon.client import Client

    status = Client(_server()).post("/api/v1/sync/suspend", {})
    click.echo(f"sync is {status.get('status')}")


@sync.command("resume")
@_SERVER
def sync_resume() -> None:
    """Turn automatic sync back on and release a pin."""
    from headwater.daemon.client import Client

    status = Client(_server()).post("/api/v1/sync/resume", {})
    click.echo(f"sync is {status.get('status')}")


@main.group()
@_SERVER
def execution() -> None:
    """Control an execution on a running daemon: kill, restart, replay, resume.

    The token comes from HEADWATER_TOKEN. Each command prints the execution's id and
    state; with --wait it waits for the end and exits 0 for SUCCESS or WARNING, 1
    otherwise. A state that does not allow the command exits 1 and says why.
    """


_WAIT = click.option("--wait", is_flag=True, help="Wait for the execution to end.")


@execution.command("kill")
@click.argument("execution_id")
@_WAIT
@_SERVER
def execution_kill(execution_id: str, wait: bool) -> None:
    """Kill a running, paused or queued execution (its processes are stopped)."""
    _control(execution_id, "kill", {}, wait)


@execution.command("restart")
@click.argument("execution_id")
@_WAIT
@_SERVER
def execution_restart(execution_id: str, wait: bool) -> None:
    """Run a FAILED or KILLED execution's failed tasks again; what succeeded is kept."""
    _control(execution_id, "restart", {}, wait)


@execution.command("replay")
@click.argument("execution_id")
@click.option("--task-run", "task_run_id", help="Start from this task run (default: the start).")
@click.option("-i", "--input", "inputs", multiple=True, help="New input: name=value (repeat).")
@_WAIT
@_SERVER
def execution_replay(
    execution_id: str, task_run_id: str | None, inputs: tuple[str, ...], wait: bool
) -> None:
    """Start a new execution of an ended one, with the same revision and inputs.

    The task runs before --task-run are copied with their outputs; given inputs
    replace all the old ones (inputs not given take their defaults).
    """
    body: dict[str, object] = {}
    if task_run_id:
        body["taskRunId"] = task_run_id
    if inputs:
        pairs = [text.partition("=") for text in inputs]
        bad = [name for name, equals, _ in pairs if not equals or not name]
        if bad:
            raise click.UsageError(f"inputs are given as name=value, got {bad[0]!r}")
        body["inputs"] = {name: value for name, _, value in pairs}
    _control(execution_id, "replay", body, wait)


@execution.command("resume")
@click.argument("execution_id")
@_WAIT
@_SERVER
def execution_resume(execution_id: str, wait: bool) -> None:
    """Resume a PAUSED execution."""
    _control(execution_id, "resume", {}, wait)


def _control(execution_id: str, verb: str, body: dict[str, object], wait: bool) -> None:
    from urllib.parse import quote

    from headwater.daemon.client import Client

    client = Client(_server())
    row = client.post(f"/api/v1/executions/{quote(execution_id, safe='')}/{verb}", body)
    shown = row.get("id", execution_id)
    if shown != execution_id:
        click.echo(f"execution {shown} replays {execution_id}")
    if wait:
        row = client.wait_for_end(str(shown))
    state = row.get("state", {}).get("current")
    click.echo(f"execution {shown} is {state}")
    if wait:
        sys.exit(0 if state in ("SUCCESS", "WARNING") else 1)


@main.command()
@click.argument("namespace")
@click.argument("flow_id", metavar="FLOW")
@click.option(
    "-i", "--input", "inputs", multiple=True, help="An input: name=value (name=@path for a file)."
)
@click.option("--label", "labels", multiple=True, help="A label: key=value (repeat).")
@click.option("--wait", is_flag=True, help="Follow the execution to its end, with progress.")
@_OUTPUT
@_SERVER
def execute(
    namespace: str,
    flow_id: str,
    inputs: tuple[str, ...],
    labels: tuple[str, ...],
    wait: bool,
    output: str,
) -> None:
    """Start an execution of a deployed flow on a running daemon.

    The token comes from HEADWATER_TOKEN. Prints the new execution's id. With --wait,
    prints each task run's state as it changes, then the end state; exit 0 when it
    ends SUCCESS or WARNING, 1 otherwise (its error is printed). Inputs the flow refuses
    start nothing and exit 1 with every problem. `--output json` prints the execution
    as the API answers it: the created one, or with --wait the ended one.
    """
    from urllib.parse import quote, urlencode

    from headwater.daemon.client import Client

    fields, files = _input_flags(inputs)
    pairs = [_pair(text, "--label", "key=value") for text in labels]
    query = urlencode([("labels", f"{key}:{value}") for key, value in pairs])
    path = f"/api/v1/executions/{quote(namespace, safe='')}/{quote(flow_id, safe='')}"
    path += f"?{query}" if query else ""
    client = Client(_server())
    row = client.post_form(path, fields, files) if files else client.post(path, {"inputs": fields})
    json_output = output == "json"  # then stdout holds the JSON alone; the rest goes to stderr
    click.echo(f"execution {row.get('id')} of {namespace}.{flow_id} started", err=json_output)
    if not wait:
        if json_output:
            click.echo(_dumps(row))
        return
    row = _follow(client, str(row.get("id")), err=json_output)
    state = row.get("state", {}).get("current")
    click.echo(f"execution {row.get('id')} ended {state}", err=json_output)
    if row.get("error"):
        click.echo(f"error: {row['error']}", err=True)
    if json_output:
        click.echo(_dumps(row))
    sys.exit(0 if state in ("SUCCESS", "WARNING") else 1)


def _pair(text: str, flag: str, form: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise click.UsageError(f"{flag} {text!r}: write {form}")
    return name, value


def _input_flags(flags: tuple[str, ...]) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """Text inputs, and file inputs (`name=@path`) read from disk."""
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for flag in flags:
        name, value = _pair(flag, "-i", "name=value (name=@path for a file)")
        if not value.startswith("@"):
            fields[name] = value
            continue
        path = Path(value[1:])
        try:
            files[name] = (path.name, path.read_bytes())
        except OSError as exc:
            raise click.UsageError(f"-i {flag!r}: cannot read {path}: {exc.strerror}") from None
    return fields, files


FOLLOW_POLL_SECONDS = 0.3  # how often `execute --wait` reads the execution
ENDED = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "SKIPPED")


def _follow(client: Client, execution_id: str, err: bool = False) -> dict[str, Any]:
    """Read the execution until it ends, printing each task run whose state changed
    (on standard error with `err`)."""
    import time
    from urllib.parse import quote

    seen: dict[str, str] = {}
    while True:
        row = client.get(f"/api/v1/executions/{quote(execution_id, safe='')}")
        for run in row.get("taskRunList") or []:
            state = run["state"]["current"]
            if seen.get(run["id"]) != state:
                seen[run["id"]] = state
                click.echo(_progress_line(run, state), err=err)
        if row["state"]["current"] in ENDED:
            return dict(row)
        time.sleep(FOLLOW_POLL_SECONDS)


def _progress_line(run: dict[str, Any], state: str) -> str:
    label = run["taskId"] + (f"[{run['value']}]" if run.get("value") is not None else "")
    line = f"  {label:<30} {state}"
    if state in ENDED and run["state"].get("duration"):
        line += f" in {run['state']['duration'].removeprefix('PT').lower()}"  # PT1M2.5S: 1m2.5s
    if run.get("error") and state in ("FAILED", "KILLED", "WARNING"):
        line += f": {run['error']}"
    return line


@main.command()
@click.argument("namespace")
@click.argument("flow_id", metavar="FLOW")
@click.argument("trigger_id", metavar="TRIGGER")
@click.option("--from", "start", required=True, help="First time (RFC 3339, or a date).")
@click.option("--to", "end", required=True, help="Last time, included (RFC 3339, or a date).")
@_SERVER
def backfill(namespace: str, flow_id: str, trigger_id: str, start: str, end: str) -> None:
    """Run a Schedule trigger over a past range on a running daemon.

    Each time of the cron from --from to --to (both included) starts one execution,
    with `trigger.date` set to that time; a time the schedule already fired is not
    fired again. Times without an offset are read in the schedule's time zone. The
    daemon creates the executions at a bounded rate; this prints how many and returns.
    The token comes from HEADWATER_TOKEN.
    """
    from urllib.parse import quote

    from headwater.daemon.client import Client
    from headwater.daemon.progress import Waiting

    parts = "/".join(quote(part, safe="") for part in (namespace, flow_id, trigger_id))
    path = f"/api/v1/triggers/{parts}/backfill"
    server = _server()
    with Waiting(f"asking {server} to backfill"):
        answer = Client(server).post(path, {"from": start, "to": end})
    click.echo(
        f"backfill of {namespace}.{flow_id} trigger {trigger_id}: {answer.get('times')} "
        f"time(s) from {answer.get('first')} to {answer.get('last')}, "
        f"{answer.get('perSecond')} a second"
    )


if __name__ == "__main__":
    main()
