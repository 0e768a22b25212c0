"""`headwater init`, the CI files and hook it writes, and the template inside a wheel.

Every command runs as a user runs it, in a home folder of its own, so that no global
git configuration exists unless a test writes one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs

import pytest
import yaml

from headwater.daemon.template import (
    commit_author,
    init_repository,
    template_files,
    template_root,
)

ROOT = Path(__file__).resolve().parents[2]
FALLBACK_AUTHOR = "Headwater <headwater@localhost>"
MESSAGE = "Initial flows from the Headwater template"
SOURCES = ("daemon", "runners", "web", "flows-repo-template", "setup.py", "pyproject.toml")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """This process's environment with an empty home: no git identity, no git config."""
    home = tmp_path / "home"
    home.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "EMAIL"}
    clean.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1")
    return clean


def headwater(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "headwater.daemon.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def git(repo: Path, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def init(tmp_path: Path, env: dict[str, str], name: str = "my-flows") -> Path:
    result = headwater("init", name, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path / name


def expected_files() -> list[str]:
    return [path.as_posix() for path in template_files()]


# -- headwater init ---------------------------------------------------------------------


def test_init_makes_a_repository_with_one_commit_of_the_whole_template(
    tmp_path: Path, env: dict[str, str]
) -> None:
    result = headwater("init", "my-flows", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    repo = tmp_path / "my-flows"

    assert git(repo, "rev-list", "--count", "HEAD", env=env) == "1"
    assert git(repo, "symbolic-ref", "HEAD", env=env) == "refs/heads/main"
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s", env=env) == (
        f"{FALLBACK_AUTHOR}|{FALLBACK_AUTHOR}|{MESSAGE}"
    )
    assert git(repo, "ls-files", env=env).splitlines() == sorted(expected_files())
    assert git(repo, "status", "--porcelain", "--ignored", env=env) == ""
    for rel in expected_files():
        assert (repo / rel).read_bytes() == (template_root() / rel).read_bytes(), rel

    sha = git(repo, "rev-parse", "HEAD", env=env)
    assert f"committed them on branch main: {sha[:12]} by {FALLBACK_AUTHOR}" in result.stdout
    assert "  .github/workflows/headwater.yml\n" in result.stdout
    assert "Next steps:" in result.stdout
    assert "headwater validate" in result.stdout


def test_a_new_repository_validates(tmp_path: Path, env: dict[str, str]) -> None:
    repo = init(tmp_path, env)
    result = headwater("validate", str(repo), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "4 flow(s) valid" in result.stderr


def test_the_author_is_the_configured_git_user(tmp_path: Path, env: dict[str, str]) -> None:
    Path(env["HOME"], ".gitconfig").write_text(
        "[user]\n\tname = Ada Lovelace\n\temail = ada@example.com\n"
    )
    repo = init(tmp_path, env)
    author = git(repo, "log", "-1", "--format=%an <%ae>", env=env)
    assert author == "Ada Lovelace <ada@example.com>"


def test_init_into_an_existing_empty_folder(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "empty").mkdir()
    repo = init(tmp_path, env, "empty")
    assert git(repo, "rev-list", "--count", "HEAD", env=env) == "1"


def test_a_second_init_into_the_same_folder_exits_2_and_changes_nothing(
    tmp_path: Path, env: dict[str, str]
) -> None:
    repo = init(tmp_path, env)
    sha = git(repo, "rev-parse", "HEAD", env=env)
    (repo / "flows/tutorial/hello.yaml").write_text("# my edit\n", encoding="utf-8")

    result = headwater("init", "my-flows", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: my-flows already exists and is not empty; give a new or empty folder\n"
    )
    assert git(repo, "rev-parse", "HEAD", env=env) == sha
    assert (repo / "flows/tutorial/hello.yaml").read_text() == "# my edit\n"


def test_init_without_git_says_so_and_leaves_no_folder(tmp_path: Path, env: dict[str, str]) -> None:
    env["PATH"] = str(tmp_path / "no-git-here")
    result = headwater("init", "my-flows", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr == "error: git is not installed (or not on PATH); install git\n"
    assert not (tmp_path / "my-flows").exists()


def test_init_repository_of_a_missing_folder_commits_the_template(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the daemon does for its demo repository: one call, no git user needed."""
    for name in [k for k in os.environ if k.startswith("GIT_") or k == "EMAIL"]:
        monkeypatch.delenv(name)
    for name in ("HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_NOSYSTEM"):
        monkeypatch.setenv(name, env[name])
    demo = tmp_path / "data" / "demo-repo"
    sha = init_repository(demo)
    assert git(demo, "rev-parse", "HEAD", env=env) == sha
    assert git(demo, "ls-files", env=env).splitlines() == sorted(expected_files())
    assert commit_author(demo) == FALLBACK_AUTHOR


# -- what the new repository holds: CI and the pre-commit hook ---------------------------

IDENTITY = {
    "GIT_AUTHOR_NAME": "Ada",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
}
NEW_FLOW = (
    "id: bye\nnamespace: tutorial\ntasks:\n  - id: x\n    type: core.log.Log\n    message: bye\n"
)


def headwater_on_path(tmp_path: Path, env: dict[str, str], plan: str | None = None) -> None:
    """Put a `headwater` command first on PATH: this checkout's, as CI would install it.

    With `plan` (a shell snippet), `headwater plan` runs that instead and records its
    arguments in `plan-args`, to check what the CI files do with plan's exit status.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = f'if [ "$1" = plan ]; then echo "$@" > "{tmp_path}/plan-args"; {plan}; fi\n'
    script = bin_dir / "headwater"
    script.write_text(
        "#!/bin/sh\n"
        + (fake if plan else "")
        + f'exec "{sys.executable}" -m headwater.daemon.cli "$@"\n'
    )
    script.chmod(0o755)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"


@pytest.fixture
def pull_request(tmp_path: Path, env: dict[str, str]) -> tuple[Path, str]:
    """A new repository on branch `feature` that adds a flow; its `origin` has moved on.

    Returns the repository and the commit the branch started from.
    """
    repo = init(tmp_path, env)
    env.update(IDENTITY)
    fork_point = git(repo, "rev-parse", "HEAD", env=env)
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo), str(origin), env=env)
    other = tmp_path / "other"
    git(tmp_path, "clone", "--quiet", str(origin), str(other), env=env)
    git(other, "commit", "--quiet", "--allow-empty", "-m", "the target moves on", env=env)
    git(other, "push", "--quiet", "origin", "main", env=env)
    git(repo, "remote", "add", "origin", str(origin), env=env)
    git(repo, "fetch", "--quiet", "origin", env=env)
    git(repo, "checkout", "--quiet", "-b", "feature", env=env)
    (repo / "flows/tutorial/bye.yaml").write_text(NEW_FLOW)
    git(repo, "add", "--all", env=env)
    git(repo, "commit", "--quiet", "-m", "add tutorial.bye", env=env)
    return repo, fork_point


def github_workflow(repo: Path) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(
        (repo / ".github/workflows/headwater.yml").read_text(encoding="utf-8")
    )
    return loaded


def github_step(repo: Path, name: str) -> dict[str, Any]:
    (job,) = github_workflow(repo)["jobs"].values()
    (step,) = [s for s in job["steps"] if s.get("name") == name]
    return dict(step)


def run_github_plan_step(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The Plan step's script as the runner runs it (`bash -e`), for a pull request on main."""
    env.update(BASE_REF="main", GITHUB_STEP_SUMMARY=str(repo.parent / "summary.md"))
    script = github_step(repo, "Plan")["run"]
    return subprocess.run(
        ["bash", "-e", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_github_workflow_validates_and_comments_the_plan(
    tmp_path: Path, env: dict[str, str]
) -> None:
    repo = init(tmp_path, env)
    workflow = github_workflow(repo)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers
    assert workflow["permissions"]["pull-requests"] == "write"
    (job,) = workflow["jobs"].values()
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "headwater validate" in runs
    assert 'headwater plan --base "origin/$BASE_REF" --format markdown' in runs
    assert github_step(repo, "Plan")["env"]["BASE_REF"] == "${{ github.base_ref }}"
    checkout = job["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0
    comment = github_step(repo, "Comment the plan on the pull request")
    assert comment["uses"].startswith("actions/github-script@")


def test_the_github_plan_step_writes_the_plan_of_the_pull_request(
    pull_request: tuple[Path, str], tmp_path: Path, env: dict[str, str]
) -> None:
    repo, _ = pull_request
    headwater_on_path(tmp_path, env)
    result = run_github_plan_step(repo, env)
    assert result.returncode == 0, result.stderr
    plan = (repo / "plan.md").read_text()
    assert plan.startswith("### Headwater plan: ✅ deploys")
    assert "add `tutorial.bye` (flows/tutorial/bye.yaml)" in plan
    assert (tmp_path / "summary.md").read_text() == plan


def test_the_github_plan_step_fails_on_an_invalid_flow_and_keeps_the_plan(
    pull_request: tuple[Path, str], tmp_path: Path, env: dict[str, str]
) -> None:
    repo, _ = pull_request
    (repo / "flows/tutorial/bye.yaml").write_text(NEW_FLOW.replace("message:", "mesage:"))
    headwater_on_path(tmp_path, env)
    result = run_github_plan_step(repo, env)
    assert result.returncode == 1
    plan = (repo / "plan.md").read_text()
    assert "would not deploy" in plan
    assert "flows/tutorial/bye.yaml:" in plan


def test_the_github_plan_step_explains_a_plan_that_printed_nothing(
    tmp_path: Path, env: dict[str, str]
) -> None:
    repo = init(tmp_path, env)
    headwater_on_path(tmp_path, env, plan="exit 2")
    result = run_github_plan_step(repo, env)
    assert result.returncode == 2
    assert (tmp_path / "plan-args").read_text() == "plan --base origin/main --format markdown\n"
    expected = "`headwater plan` printed nothing (exit status 2); see the job's log.\n"
    assert (repo / "plan.md").read_text() == expected


@pytest.mark.parametrize("earlier", [None, "<!-- headwater-plan -->\nthe previous plan"])
def test_the_github_comment_is_made_once_then_updated(
    tmp_path: Path, env: dict[str, str], earlier: str | None
) -> None:
    """The github-script step, run by node against a recording stand-in for GitHub's API."""
    repo = init(tmp_path, env)
    (repo / "plan.md").write_text("### Headwater plan: ✅ deploys\n")
    script = github_step(repo, "Comment the plan on the pull request")["with"]["script"]
    comments = [{"id": 1, "body": "looks good"}] + ([{"id": 7, "body": earlier}] if earlier else [])
    harness = (
        "const calls = [];\n"
        f"const comments = {json.dumps(comments)};\n"
        "const github = {paginate: async () => comments, rest: {issues: {listComments: {},\n"
        "  createComment: async (a) => calls.push(['create', a]),\n"
        "  updateComment: async (a) => calls.push(['update', a])}}};\n"
        "const context = {repo: {owner: 'o', repo: 'r'}, issue: {number: 5}};\n"
        f"(async () => {{\n{script}\n}})().then(() => console.log(JSON.stringify(calls)));\n"
    )
    result = subprocess.run(
        ["node", "-e", harness], cwd=repo, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    ((verb, call),) = json.loads(result.stdout)
    assert call["body"] == "<!-- headwater-plan -->\n### Headwater plan: ✅ deploys\n"
    if earlier:
        assert (verb, call["comment_id"]) == ("update", 7)
    else:
        assert (verb, call["issue_number"]) == ("create", 5)


def gitlab_job(repo: Path) -> dict[str, Any]:
    config = yaml.safe_load((repo / ".gitlab-ci.yml").read_text(encoding="utf-8"))
    job: dict[str, Any] = config["headwater"]
    return job


def test_the_gitlab_job_validates_and_keeps_the_plan(tmp_path: Path, env: dict[str, str]) -> None:
    job = gitlab_job(init(tmp_path, env))
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    script = "\n".join(job["script"])
    assert "headwater validate" in script
    assert "headwater plan --base" in script
    assert "--format markdown" in script
    assert job["artifacts"]["paths"] == ["plan.md"]
    assert job["artifacts"]["when"] == "always"


class NotesApi(BaseHTTPRequestHandler):
    """GitLab's notes endpoint on the loopback: records each request."""

    received: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = parse_qs(self.rfile.read(length).decode())["body"][0]
        token = self.headers["PRIVATE-TOKEN"]
        self.received.append({"path": self.path, "token": token, "body": body})
        self.send_response(201)
        self.end_headers()
        self.wfile.write(b'{"id": 1}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_gitlab_job_plans_the_merge_request_and_comments_it(
    pull_request: tuple[Path, str], tmp_path: Path, env: dict[str, str]
) -> None:
    """The base is where the branch left the target, even after the target moved on."""
    repo, fork_point = pull_request
    git(repo, "update-ref", "-d", "refs/remotes/origin/main", env=env)  # the job fetches it
    headwater_on_path(tmp_path, env)
    job = gitlab_job(repo)
    lines = [line for line in job["before_script"] if "pip install" not in line]
    NotesApi.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotesApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env.update(
        CI_MERGE_REQUEST_TARGET_BRANCH_NAME="main",
        CI_API_V4_URL=f"http://127.0.0.1:{server.server_address[1]}/api/v4",
        CI_PROJECT_ID="42",
        CI_MERGE_REQUEST_IID="7",
        HEADWATER_GITLAB_TOKEN="glpat-test",
    )
    try:
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", "\n".join([*lines, *job["script"]])],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stdout + result.stderr
    plan = (repo / "plan.md").read_text()
    assert plan.startswith("### Headwater plan: ✅ deploys")
    assert "1 added, 0 updated, 0 deleted" in plan  # not the target's later commit
    assert NotesApi.received == [
        {"path": "/api/v4/projects/42/merge_requests/7/notes", "token": "glpat-test", "body": plan}
    ]

    headwater_on_path(tmp_path, env, plan="exit 0")
    env.pop("HEADWATER_GITLAB_TOKEN")
    subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", "\n".join([*lines, *job["script"]])],
        cwd=repo,
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert (tmp_path / "plan-args").read_text() == f"plan --base {fork_point} --format markdown\n"


def test_the_gitlab_job_fails_when_a_flow_is_invalid(
    pull_request: tuple[Path, str], tmp_path: Path, env: dict[str, str]
) -> None:
    repo, _ = pull_request
    (repo / "flows/tutorial/bye.yaml").write_text(NEW_FLOW.replace("message:", "mesage:"))
    headwater_on_path(tmp_path, env)
    job = gitlab_job(repo)
    lines = [line for line in job["before_script"] if "pip install" not in line]
    env["CI_MERGE_REQUEST_TARGET_BRANCH_NAME"] = "main"
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", "\n".join([*lines, *job["script"]])],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "flows/tutorial/bye.yaml:" in result.stdout  # validate's errors, in the job's log
    assert "would not deploy" in (repo / "plan.md").read_text()


def test_the_pre_commit_hook_validates_the_flows(tmp_path: Path, env: dict[str, str]) -> None:
    repo = init(tmp_path, env)
    headwater_on_path(tmp_path, env)
    run = [sys.executable, "-m", "pre_commit", "run", "--all-files"]

    ok = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "headwater validate" in ok.stdout
    assert "Passed" in ok.stdout

    broken = repo / "flows/tutorial/hello.yaml"
    broken.write_text(broken.read_text().replace("message:", "mesage:", 1))
    failed = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1
    assert "flows/tutorial/hello.yaml:" in failed.stdout
    assert "unknown property 'mesage'; did you mean 'message'?" in failed.stdout


# -- the template inside the package -----------------------------------------------------


def test_a_wheel_ships_the_whole_template_and_an_install_finds_it(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    (source / "README.md").write_text("Headwater\n")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("headwater-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [rel for rel in expected_files() if f"headwater/template/{rel}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    for dotfile in (".vscode/settings.json", ".github/workflows/headwater.yml", ".headwaterignore"):
        assert f"headwater/template/{dotfile}" in names

    # A regular (not editable) install finds the template in site-packages and copies it.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    probe = (
        "import sys; from pathlib import Path\n"
        "from headwater.daemon.template import copy_template, template_root\n"
        "print(template_root())\n"
        "print(len(copy_template(Path(sys.argv[1]))))\n"
    )
    copied = tmp_path / "copied"
    result = subprocess.run(
        [python, "-c", probe, str(copied)], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    root, count = result.stdout.splitlines()
    assert Path(root).parts[-3:] == ("site-packages", "headwater", "template")
    assert int(count) == len(expected_files())
    assert (copied / ".github/workflows/headwater.yml").is_file()
