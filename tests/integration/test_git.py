"""The git mirror against real repositories: local paths, file://, HTTP and (faked) SSH."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gitrepos import (
    GitHttpServer,
    WorkingClone,
    closed_port_url,
    git,
    make_remote,
    silent_server,
)

from headwater.daemon.git import (
    GITLINK_MODE,
    SYMLINK_MODE,
    Change,
    Credentials,
    GitError,
    Mirror,
)

pytestmark = pytest.mark.integration

TOKEN = "hw-test-token-5f3c9a"
ADA = ("Ada Lovelace", "ada@example.com")
GRACE = ("Grace Hopper", "grace@example.com")
HANG = 30.0  # seconds: a wait this long is a hang, not a slow machine


@pytest.fixture(autouse=True)
def no_user_git_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The mirror must work without any git configuration of the machine or the user."""
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path / "remote.git")


@pytest.fixture
def work(tmp_path: Path, remote: Path) -> WorkingClone:
    return WorkingClone.create(tmp_path / "work", remote)


@pytest.fixture
def mirror(tmp_path: Path, remote: Path) -> Iterator[Mirror]:
    with Mirror(tmp_path / "data" / "mirror", str(remote), "main") as m:
        yield m


def first_push(work: WorkingClone) -> str:
    work.write_many({"flows/team/etl.yaml": "id: etl\n", "README.md": "hello\n"})
    sha = work.commit("Add etl", author=ADA)
    work.push()
    return sha


def log_git_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Puts a `git` first on PATH that records its arguments, then runs the real one."""
    real_git, bin_dir, argv_log = shutil.which("git"), tmp_path / "git-bin", tmp_path / "argv"
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{argv_log}"\nexec "{real_git}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return argv_log


def by_path(changes: list[Change]) -> dict[str, list[Change]]:
    out: dict[str, list[Change]] = {}
    for change in changes:
        out.setdefault(change.path, []).append(change)
    return out


# -- fetching ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["path", "file"])
def test_fetch_over_a_local_path_and_file_url(
    tmp_path: Path, remote: Path, work: WorkingClone, form: str
) -> None:
    sha = first_push(work)
    url = str(remote) if form == "path" else remote.as_uri()
    with Mirror(tmp_path / "mirror", url, "main") as mirror:
        assert mirror.head() is None
        mirror.ensure()
        assert mirror.remote_head() == sha
        assert mirror.fetch() == sha
        assert mirror.head() == sha
        assert git("--git-dir", str(tmp_path / "mirror"), "config", "remote.origin.url") == url
    moved = remote.rename(tmp_path / "moved.git")
    with Mirror(tmp_path / "mirror", str(moved), "main") as mirror:
        assert mirror.fetch() == sha  # the same mirror, pointed at a new URL
        assert git("--git-dir", str(mirror.path), "config", "remote.origin.url") == str(moved)


def test_fetch_follows_a_force_push(mirror: Mirror, work: WorkingClone) -> None:
    first = first_push(work)
    work.write("flows/team/etl.yaml", "id: etl\n# v2\n")
    second = work.commit("Change etl")
    work.push()
    assert mirror.fetch() == second
    work.reset_hard(first)
    work.write("flows/team/other.yaml", "id: other\n")
    rewritten = work.commit("Rewrite")
    work.push(force=True)
    assert mirror.remote_head() == rewritten
    assert mirror.fetch() == rewritten
    assert not mirror.is_ancestor(second, rewritten)
    assert mirror.is_ancestor(first, rewritten)
    assert mirror.read_file(rewritten, "flows/team/other.yaml") == b"id: other\n"


def test_fetch_over_http_with_a_bearer_token(
    tmp_path: Path, remote: Path, work: WorkingClone, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = first_push(work)
    argv_log = log_git_argv(tmp_path, monkeypatch)
    with GitHttpServer(tmp_path, token=TOKEN) as server:
        url = server.url("remote.git")
        with Mirror(tmp_path / "mirror", url, "main", Credentials(token=TOKEN)) as mirror:
            assert mirror.remote_head() == sha
            assert mirror.fetch() == sha
            assert mirror.read_file(sha, "README.md") == b"hello\n"
        assert server.requests
        assert all(had_auth for _, _, had_auth in server.requests)
        assert not any(TOKEN in path for _, path, _ in server.requests)
    for file in (tmp_path / "mirror").rglob("*"):
        if file.is_file():
            assert TOKEN.encode() not in file.read_bytes(), f"the token was written to {file}"
    assert "ls-remote" in argv_log.read_text()
    assert TOKEN not in argv_log.read_text()


def test_fetch_over_http_with_basic_credentials(
    tmp_path: Path, remote: Path, work: WorkingClone
) -> None:
    sha = first_push(work)
    with GitHttpServer(tmp_path, basic=("deploy", TOKEN)) as server:
        credentials = Credentials(token=f"deploy:{TOKEN}")
        with Mirror(tmp_path / "m", server.url("remote.git"), "main", credentials) as mirror:
            assert mirror.fetch() == sha


def test_http_without_the_required_token_asks_for_credentials(
    tmp_path: Path, remote: Path, work: WorkingClone
) -> None:
    first_push(work)
    with GitHttpServer(tmp_path, token=TOKEN) as server:
        mirror = Mirror(tmp_path / "mirror", server.url("remote.git"), "main")
        with pytest.raises(GitError, match="set the token") as caught:
            mirror.remote_head()
    assert "remote.git" in str(caught.value)


@pytest.mark.parametrize("wrong", ["not-the-token", "deploy:not-the-password"])
def test_http_with_a_wrong_token_fails_clearly_without_the_secret(
    tmp_path: Path, remote: Path, work: WorkingClone, wrong: str
) -> None:
    first_push(work)
    with GitHttpServer(tmp_path, token=TOKEN) as server:
        url = server.url("remote.git")
        mirror = Mirror(tmp_path / "mirror", url, "main", Credentials(token=wrong))
        for operation in (mirror.remote_head, mirror.fetch):
            with pytest.raises(GitError, match="check the token") as caught:
                operation()
            message = str(caught.value)
            assert url in message
            assert wrong not in message
            assert "not-the-" not in message
    assert "not-the-token" not in repr(Credentials(token="not-the-token"))


def test_a_missing_branch_has_no_remote_head_and_cannot_be_fetched(
    tmp_path: Path, remote: Path, work: WorkingClone
) -> None:
    first_push(work)
    mirror = Mirror(tmp_path / "mirror", str(remote), "release")
    assert mirror.remote_head() is None
    with pytest.raises(GitError, match="branch 'release' does not exist"):
        mirror.fetch()
    assert mirror.head() is None


def test_remote_head_with_nothing_new_answers_the_fetched_head(
    mirror: Mirror, work: WorkingClone
) -> None:
    # How long it takes (every poll asks): bench/git.py.
    sha = first_push(work)
    assert mirror.fetch() == sha
    for _ in range(3):
        assert mirror.remote_head() == sha
    assert mirror.head() == sha


def test_a_remote_that_refuses_connections_fails_without_waiting_for_the_timeout(
    tmp_path: Path,
) -> None:
    mirror = Mirror(tmp_path / "mirror", closed_port_url(), "main", timeout=HANG * 2)
    started = time.monotonic()
    with pytest.raises(GitError, match=r"127\.0\.0\.1"):
        mirror.remote_head()
    assert time.monotonic() - started < HANG


def test_a_remote_that_never_answers_times_out(tmp_path: Path) -> None:
    with silent_server() as url:
        mirror = Mirror(tmp_path / "mirror", url, "main", timeout=1)
        mirror.ensure()
        for operation in (mirror.remote_head, mirror.fetch):
            started = time.monotonic()
            with pytest.raises(GitError, match="timed out after 1s"):
                operation()
            assert time.monotonic() - started < HANG  # the timeout ended it: no hang


def test_a_missing_local_remote_says_so(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path / "mirror", str(tmp_path / "nowhere.git"), "main")
    with pytest.raises(GitError, match=r"git ls-remote of branch 'main' from .*nowhere\.git"):
        mirror.remote_head()


def test_ssh_uses_the_key_file_from_the_settings(
    tmp_path: Path, remote: Path, work: WorkingClone, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = first_push(work)
    bin_dir, calls = tmp_path / "bin", tmp_path / "ssh-calls"
    bin_dir.mkdir()
    fake_ssh = bin_dir / "ssh"  # runs the remote command locally, records its arguments
    fake_ssh.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" >> "$SSH_CALLS"\nfor last; do :; done\nexec sh -c "$last"\n'
    )
    fake_ssh.chmod(fake_ssh.stat().st_mode | stat.S_IXUSR)
    key = tmp_path / "keys dir" / "id_ed25519"
    key.parent.mkdir()
    key.write_text("not really a key\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SSH_CALLS", str(calls))
    url = f"ssh://git@example.invalid{remote}"
    with Mirror(tmp_path / "mirror", url, "main", Credentials(ssh_key_file=key)) as mirror:
        assert mirror.fetch() == sha
    args = calls.read_text().splitlines()
    assert args[:2] == ["-i", str(key)]
    assert {"IdentitiesOnly=yes", "StrictHostKeyChecking=accept-new", "BatchMode=yes"} <= set(args)


def test_a_missing_ssh_key_file_is_refused(tmp_path: Path) -> None:
    credentials = Credentials(ssh_key_file=tmp_path / "missing")
    with pytest.raises(GitError, match=r"SSH key file .*does not exist"):
        Mirror(tmp_path / "m", "git@example.invalid:org/flows.git", "main", credentials)


@pytest.mark.parametrize(
    "url",
    [
        "https://deploy:hunter2secret@example.com/org/flows.git",
        "https://hunter2secret@example.com/org/flows.git",
        "ssh://git:hunter2secret@example.com/org/flows.git",
    ],
)
def test_urls_with_credentials_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(GitError, match="token setting") as caught:
        Mirror(tmp_path / "m", url, "main")
    assert "hunter2secret" not in str(caught.value)


@pytest.mark.parametrize("url", ["--upload-pack=touch /tmp/x", "ext::sh -c touch% /tmp/x"])
def test_urls_git_could_misread_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(GitError):
        Mirror(tmp_path / "m", url, "main").remote_head()


def test_branch_names_that_are_not_refs_are_refused(tmp_path: Path) -> None:
    for branch in ("-x", "a..b", "a b", "main.lock", ""):
        with pytest.raises(GitError, match="not a valid git branch name"):
            Mirror(tmp_path / "m", "https://example.com/flows.git", branch)


def test_git_variables_inherited_from_a_hook_are_ignored(
    mirror: Mirror, work: WorkingClone, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sha = first_push(work)
    monkeypatch.setenv("GIT_DIR", str(work.path / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(work.path))
    with Mirror(tmp_path / "other-mirror", str(work.path / ".." / "remote.git"), "main") as m:
        assert m.fetch() == sha
        assert m.commit(sha).message == "Add etl"


# -- reading history --------------------------------------------------------------------


def test_commit_metadata(mirror: Mirror, work: WorkingClone) -> None:
    first = first_push(work)
    work.write("flows/team/etl.yaml", "id: etl\n# changed\n")
    second = work.commit("Change etl\n\nWhy: a longer body.\n", author=GRACE, date=1_750_000_000)
    work.push()
    mirror.fetch()
    commit = mirror.commit(second)
    assert commit.sha == second
    assert commit.author == "Grace Hopper <grace@example.com>"
    assert commit.date == 1_750_000_000
    assert commit.message == "Change etl\n\nWhy: a longer body."
    assert commit.parents == (first,)
    assert mirror.commit(first).parents == ()


def test_resolve_full_and_short_shas_and_refs(mirror: Mirror, work: WorkingClone) -> None:
    sha = first_push(work)
    mirror.fetch()
    assert mirror.resolve(sha) == sha
    assert mirror.resolve(sha[:8]) == sha
    assert mirror.resolve(mirror.ref) == sha
    assert mirror.resolve("origin/main") == sha
    with pytest.raises(GitError, match="does not name a commit"):
        mirror.resolve("0badc0de")
    with pytest.raises(GitError, match="not a valid commit name"):
        mirror.resolve("--all")


def test_is_ancestor_and_exists(mirror: Mirror, work: WorkingClone) -> None:
    first = first_push(work)
    work.write("flows/team/etl.yaml", "id: etl\n# 2\n")
    second = work.commit("Second")
    work.push()
    mirror.fetch()
    assert mirror.is_ancestor(first, second)
    assert not mirror.is_ancestor(second, first)
    assert mirror.exists(first)
    assert not mirror.exists("0" * 40)
    assert not mirror.exists("not a sha")


def test_keep_survives_gc_after_the_branch_was_force_pushed_away(
    mirror: Mirror, work: WorkingClone
) -> None:
    base = first_push(work)
    work.write("flows/team/etl.yaml", "id: etl\n# deployed\n")
    deployed = work.commit("Deployed")
    work.write("flows/team/etl.yaml", "id: etl\n# never deployed\n")
    dropped = work.commit("Dropped")
    work.push()
    mirror.fetch()
    mirror.keep(deployed)
    work.reset_hard(base)
    work.write("flows/team/new.yaml", "id: new\n")
    work.commit("Rewritten")
    work.push(force=True)
    mirror.fetch()
    git("--git-dir", str(mirror.path), "gc", "--quiet", "--prune=now")
    assert mirror.exists(deployed)
    assert mirror.read_file(deployed, "flows/team/etl.yaml") == b"id: etl\n# deployed\n"
    assert not mirror.exists(dropped)
    assert mirror.resolve("refs/headwater/deployed") == deployed


def test_last_commits_credits_each_path_to_the_last_commit_that_touched_it(
    mirror: Mirror, work: WorkingClone
) -> None:
    base = first_push(work)
    work.write_many({"flows/a/one.yaml": "1", "flows/a/two.yaml": "2", "flows/b/three.yaml": "3"})
    c1 = work.commit("c1", author=ADA)
    work.write("flows/a/one.yaml", "1b")
    work.remove("flows/b/three.yaml")
    c2 = work.commit("c2", author=GRACE)
    work.write("docs/outside.md", "not a flow")
    work.write("flows/a/two.yaml", "2b")
    c3 = work.commit("c3", author=ADA)
    work.write("docs/outside.md", "still not a flow")
    c4 = work.commit("c4 touches nothing under flows/")
    work.push()
    mirror.fetch()
    paths = ["flows/a/one.yaml", "flows/a/two.yaml", "flows/b/three.yaml"]
    credited = mirror.last_commits(base, c4, paths)
    assert {p: c.sha for p, c in credited.items()} == {
        "flows/a/one.yaml": c2,
        "flows/a/two.yaml": c3,
        "flows/b/three.yaml": c2,
    }
    assert credited["flows/a/one.yaml"].author == "Grace Hopper <grace@example.com>"
    whole = mirror.last_commits(None, c4, [*paths, "flows/team/etl.yaml"])
    assert whole["flows/team/etl.yaml"].sha == base
    assert mirror.last_commits(c2, c4, ["flows/a/two.yaml"])["flows/a/two.yaml"].sha == c3
    assert mirror.last_commits(c1, c4, []) == {}
    outside = mirror.last_commits(None, c4, ["docs/outside.md", "README.md"])  # other folders
    assert {p: c.sha for p, c in outside.items()} == {"docs/outside.md": c4, "README.md": base}


def test_last_commits_credits_a_rename_to_both_paths(mirror: Mirror, work: WorkingClone) -> None:
    base = first_push(work)
    work.remove("flows/team/etl.yaml")
    work.write("flows/team/etl2.yaml", "id: etl\n")  # same content: git would see a rename
    renamed = work.commit("Rename")
    work.write("flows/team/other.yaml", "id: other\n")
    later = work.commit("Later")
    work.push()
    mirror.fetch()
    paths = ["flows/team/etl.yaml", "flows/team/etl2.yaml", "flows/team/untouched.yaml"]
    credited = {p: c.sha for p, c in mirror.last_commits(base, later, paths).items()}
    assert credited == {
        "flows/team/etl.yaml": renamed,
        "flows/team/etl2.yaml": renamed,
        "flows/team/untouched.yaml": later,  # no commit in the range shows it: the head
    }


# -- trees and diffs ----------------------------------------------------------------------


def test_diff_reports_adds_modifies_deletes_renames_symlinks_and_submodules(
    mirror: Mirror, work: WorkingClone
) -> None:
    work.write_many(
        {
            "flows/team/etl.yaml": "id: etl\n",
            "flows/team/old.yaml": "id: old\nnamespace: team\n",
            "flows/team/gone.yaml": "id: gone\n",
            "flows/team/becomes_link.yaml": "id: becomes_link\n",
            "outside.txt": "x",
        }
    )
    before = work.commit("Before")
    work.write("flows/team/etl.yaml", "id: etl\n# changed\n")
    work.remove("flows/team/old.yaml")
    work.write("flows/team/renamed.yaml", "id: old\nnamespace: team\n")
    work.remove("flows/team/gone.yaml")
    work.write("flows/team/new.yaml", "id: new\n")
    work.symlink("flows/team/link.yaml", "etl.yaml")
    work.remove("flows/team/becomes_link.yaml")
    work.symlink("flows/team/becomes_link.yaml", "etl.yaml")
    work.gitlink("flows/vendored", before)
    work.write("outside.txt", "changed but outside flows/")
    after = work.commit("After")
    work.push()
    mirror.fetch()
    changes = by_path(mirror.diff(before, after))
    assert {path: [c.status for c in cs] for path, cs in changes.items()} == {
        "flows/team/etl.yaml": ["M"],
        "flows/team/old.yaml": ["D"],
        "flows/team/renamed.yaml": ["A"],
        "flows/team/gone.yaml": ["D"],
        "flows/team/new.yaml": ["A"],
        "flows/team/link.yaml": ["A"],
        "flows/team/becomes_link.yaml": ["M"],
        "flows/vendored": ["A"],
    }
    old = changes["flows/team/old.yaml"][0]
    renamed = changes["flows/team/renamed.yaml"][0]
    assert (old.old_blob, old.new_blob, old.new_mode) == (renamed.new_blob, None, None)
    assert changes["flows/team/link.yaml"][0].new_mode == SYMLINK_MODE
    retyped = changes["flows/team/becomes_link.yaml"][0]
    assert (retyped.old_mode, retyped.new_mode) == ("100644", SYMLINK_MODE)
    assert changes["flows/vendored"][0].new_mode == GITLINK_MODE
    assert changes["flows/team/new.yaml"][0].old_blob is None
    blobs = mirror.read_blobs([changes["flows/team/etl.yaml"][0].new_blob or ""])
    assert list(blobs.values()) == [b"id: etl\n# changed\n"]
    assert mirror.diff(after, after) == []
    assert {c.path for c in mirror.diff(before, after, prefix="")} >= {"outside.txt"}


def test_tree_lists_files_under_the_prefix_with_modes_and_sizes(
    mirror: Mirror, work: WorkingClone
) -> None:
    work.write_many({"flows/a/x.yaml": "12345", "flows/a/_files/run.py": "print()\n"})
    work.write("README.md", "outside")
    work.symlink("flows/a/link.yaml", "x.yaml")
    pointed = work.commit("Tree")
    work.gitlink("flows/sub", pointed)
    sha = work.commit("Submodule")
    work.push()
    mirror.fetch()
    entries = {e.path: e for e in mirror.tree(sha)}
    assert set(entries) == {
        "flows/a/x.yaml",
        "flows/a/_files/run.py",
        "flows/a/link.yaml",
        "flows/sub",
    }
    assert (entries["flows/a/x.yaml"].mode, entries["flows/a/x.yaml"].size) == ("100644", 5)
    assert entries["flows/a/link.yaml"].mode == SYMLINK_MODE
    assert (entries["flows/sub"].mode, entries["flows/sub"].blob) == (GITLINK_MODE, pointed)
    assert {e.path for e in mirror.tree(sha, prefix="flows")} == set(entries)
    assert "README.md" in {e.path for e in mirror.tree(sha, prefix="")}
    assert mirror.tree(sha, prefix="nothing/") == []


def test_unusual_file_names_round_trip(mirror: Mirror, work: WorkingClone) -> None:
    names = [
        "flows/a/with space.yaml",
        "flows/a/tab\there.yaml",
        "flows/a/ünïcode.yaml",
        "flows/a/*.yaml",
        'flows/a/quote"d.yaml',
    ]
    for name in names:
        work.write(name, name)
    sha = work.commit("Odd names")
    work.push()
    mirror.fetch()
    entries = mirror.tree(sha)
    assert sorted(e.path for e in entries) == sorted(names)
    contents = mirror.read_blobs(e.blob for e in entries)
    assert {contents[e.blob].decode() for e in entries} == set(names)
    assert all(mirror.read_file(sha, name) == name.encode() for name in names)


def test_ten_thousand_files(mirror: Mirror, work: WorkingClone) -> None:
    files = {f"flows/ns{i % 50}/flow{i}.yaml": f"id: flow{i}\n".encode() for i in range(10_000)}
    first = work.bulk_commit(files, "Ten thousand flows")
    changed = {p: data + b"# v2\n" for p, data in list(files.items())[::10]}
    second = work.bulk_commit(changed, "A thousand changed")
    work.push()
    mirror.fetch()
    entries = mirror.tree(first)
    assert len(entries) == 10_000
    contents = mirror.read_blobs(e.blob for e in entries)  # how fast: bench/git.py
    assert {contents[e.blob] for e in entries} == set(files.values())
    changes = mirror.diff(first, second)
    assert len(changes) == 1_000
    assert {c.path for c in changes} == set(changed)
    assert {c.status for c in changes} == {"M"}


# -- the cat-file process -----------------------------------------------------------------


def test_one_cat_file_process_serves_many_reads(mirror: Mirror, work: WorkingClone) -> None:
    sha = first_push(work)
    mirror.fetch()
    blobs = [e.blob for e in mirror.tree(sha, prefix="")]
    assert mirror.batch_pid is None
    mirror.read_blobs(blobs)
    pid = mirror.batch_pid
    assert pid is not None
    for _ in range(20):
        assert mirror.read_file(sha, "README.md") == b"hello\n"
        assert mirror.commit(sha).message == "Add etl"
        assert mirror.exists(sha)
    assert mirror.batch_pid == pid
    os.kill(pid, 9)  # a dead process is replaced on the next read
    assert mirror.read_file(sha, "README.md") == b"hello\n"
    assert mirror.batch_pid not in (None, pid)
    mirror.close()
    assert mirror.batch_pid is None


def test_reads_see_commits_fetched_later(mirror: Mirror, work: WorkingClone) -> None:
    first = first_push(work)
    mirror.fetch()
    assert mirror.read_file(first, "README.md") == b"hello\n"
    work.write("README.md", "hello again\n")
    second = work.commit("Again")
    work.push()
    assert mirror.fetch() == second
    assert mirror.read_file(second, "README.md") == b"hello again\n"


def test_read_file_missing_and_directories_are_none(mirror: Mirror, work: WorkingClone) -> None:
    sha = first_push(work)
    mirror.fetch()
    assert mirror.read_file(sha, ".headwaterignore") is None
    assert mirror.read_file(sha, "flows/team") is None
    assert mirror.read_file(sha, "/README.md") == b"hello\n"


def test_reading_an_unknown_blob_is_an_error(mirror: Mirror, work: WorkingClone) -> None:
    first_push(work)
    mirror.fetch()
    with pytest.raises(GitError, match="is missing"):
        mirror.read_blobs(["0123456789abcdef0123456789abcdef01234567"])
    with pytest.raises(GitError, match="not a commit or object id"):
        mirror.read_blobs(["HEAD"])


def test_no_git_process_is_left_behind(tmp_path: Path, mirror: Mirror, work: WorkingClone) -> None:
    sha = first_push(work)
    mirror.fetch()
    mirror.read_blobs(e.blob for e in mirror.tree(sha))
    pid = mirror.batch_pid
    assert pid is not None
    mirror.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie either
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_reading_before_the_first_fetch_says_so(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path / "mirror", str(tmp_path / "remote.git"), "main")
    with pytest.raises(GitError, match="the mirror does not exist yet"):
        mirror.read_file("0123456789abcdef0123456789abcdef01234567", "README.md")
    assert mirror.read_blobs([]) == {}
    assert mirror.head() is None


def test_a_lock_left_by_a_killed_fetch_does_not_block_the_next(
    tmp_path: Path, remote: Path, work: WorkingClone
) -> None:
    first = first_push(work)
    path = tmp_path / "mirror"
    with Mirror(path, str(remote), "main") as mirror:
        assert mirror.fetch() == first
    work.write("README.md", "again\n")
    second = work.commit("Again")
    work.push()
    (path / "refs" / "remotes" / "origin" / "main.lock").write_text(first)  # as a kill leaves
    with Mirror(path, str(remote), "main") as restarted:
        assert restarted.fetch() == second


def test_reads_from_many_threads_share_one_process(mirror: Mirror, work: WorkingClone) -> None:
    files = {f"flows/ns/f{i}.yaml": f"id: f{i}\n" for i in range(200)}
    work.write_many(files)
    sha = work.commit("Many")
    work.push()
    mirror.fetch()
    entries = mirror.tree(sha)
    expected = {e.blob: files[e.path].encode() for e in entries}
    pids: set[int | None] = set()

    def read(_: int) -> bool:
        ok = mirror.read_blobs(expected) == expected and mirror.commit(sha).message == "Many"
        pids.add(mirror.batch_pid)
        return ok

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(read, range(40)))
    assert len(pids) == 1


def test_a_read_only_mirror_reads_a_working_clone_without_changing_it(
    work: WorkingClone,
) -> None:
    sha = first_push(work)
    config = (work.path / ".git" / "config").read_text()
    with Mirror.read_only(work.path / ".git") as repo:
        assert repo.resolve("main") == sha
        assert repo.resolve("HEAD") == sha
        assert [e.path for e in repo.tree(sha)] == ["flows/team/etl.yaml"]
        for change in (repo.ensure, repo.fetch, lambda: repo.keep(sha)):
            with pytest.raises(GitError, match="read-only"):
                change()
    assert (work.path / ".git" / "config").read_text() == config
