"""The data directory's default and the check that git would not commit one (real git)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from headwater.daemon.datadir import (
    DEFAULT_DATA_DIR,
    DataDirRefused,
    check_data_dir,
    choose_data_dir,
)


def git_repo(path: Path, files: dict[str, str]) -> Path:
    """A working tree at `path` with `files` committed (an empty `.gitignore` unless given)."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", str(path)], check=True)
    for name, text in {".gitignore": "", **files}.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    subprocess.run(["git", "add", "--all"], cwd=path, check=True)
    return path


def test_outside_a_working_tree_the_default_is_dot_headwater_here(tmp_path: Path) -> None:
    chosen = choose_data_dir(None, tmp_path, {"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert chosen.path == DEFAULT_DATA_DIR
    assert chosen.moved_out_of is None
    assert chosen.describe() == ".headwater"


def test_in_a_working_tree_the_default_moves_to_the_user_s_data_folder(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "my flows", {"flows/a/x.yaml": "id: x\n"})
    environ = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    chosen = choose_data_dir(None, repo, environ)
    assert chosen.path.parent == tmp_path / "xdg" / "headwater"
    assert chosen.path.name.startswith("my_flows-")
    assert chosen.moved_out_of == repo.resolve()
    assert chosen.describe() == f"{chosen.path} (outside the git working tree {repo.resolve()})"
    assert chosen.left_behind is None
    # The same from any folder of the tree; another tree of the same name gets another.
    assert choose_data_dir(None, repo / "flows" / "a", environ).path == chosen.path
    other = git_repo(tmp_path / "elsewhere" / "my flows", {})
    assert choose_data_dir(None, other, environ).path != chosen.path


@pytest.mark.parametrize("xdg", [None, "", "relative/path"])
def test_without_an_absolute_xdg_data_home_it_is_under_the_home_folder(
    tmp_path: Path, xdg: str | None
) -> None:
    repo = git_repo(tmp_path / "flows", {})
    environ = {"HOME": str(tmp_path / "home")} | ({} if xdg is None else {"XDG_DATA_HOME": xdg})
    chosen = choose_data_dir(None, repo, environ)
    assert chosen.path.parent == tmp_path / "home" / ".local" / "share" / "headwater"


def test_an_earlier_daemon_s_database_in_the_tree_is_noticed(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "flows", {})
    (repo / ".headwater").mkdir()
    (repo / ".headwater" / "headwater.db").write_bytes(b"")
    chosen = choose_data_dir(None, repo, {"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert chosen.left_behind == repo / ".headwater"


def test_a_given_data_directory_outside_any_tree_is_kept_as_given(tmp_path: Path) -> None:
    assert choose_data_dir(Path("data"), tmp_path).path == Path("data")
    check_data_dir(tmp_path / "not" / "made" / "yet")


def test_the_working_tree_itself_is_refused(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "flows", {})
    with pytest.raises(DataDirRefused, match=r"is the git working tree .* itself"):
        check_data_dir(repo)


def test_a_folder_with_tracked_files_is_refused_and_they_are_named(tmp_path: Path) -> None:
    files = {f"state/{n}.txt": "x" for n in range(5)}
    repo = git_repo(tmp_path / "flows", files)
    (repo / ".gitignore").write_text("state/\n")  # ignoring tracked files does not untrack them
    with pytest.raises(DataDirRefused) as refused:
        check_data_dir(repo / "state")
    assert "git tracks files in it (state/0.txt, state/1.txt, state/2.txt, …)" in str(refused.value)


def test_a_folder_git_does_not_ignore_is_refused_with_the_line_to_add(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "flows", {})
    with pytest.raises(DataDirRefused) as refused:
        check_data_dir(repo / "var" / "data")
    assert f"add the line /var/data/ to {repo.resolve() / '.gitignore'}" in str(refused.value)


@pytest.mark.parametrize(
    ("pattern", "given"),
    [("/data/", "data"), ("build/", "build/daemon/data"), ("*.state", "x.state"), ("d*/", "d*")],
)
def test_an_ignored_folder_is_accepted(tmp_path: Path, pattern: str, given: str) -> None:
    repo = git_repo(tmp_path / "flows", {".gitignore": f"{pattern}\n"})
    check_data_dir(repo / given)


def test_names_are_paths_not_patterns(tmp_path: Path) -> None:
    """`d*` holds no tracked file even though `data/x` is tracked; it is not ignored."""
    repo = git_repo(tmp_path / "flows", {"data/x": "x", ".gitignore": "/data/\n"})
    with pytest.raises(DataDirRefused, match="git does not ignore it"):
        check_data_dir(repo / "d*")
