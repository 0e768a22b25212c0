"""Files in and out of a script task's working directory.

In: namespace files and `inputFiles`, written at paths that must stay inside the
directory. Out: the files `outputFiles` globs match, kept in internal storage. A path
that would leave the directory (`..`, an absolute path, a symbolic link pointing out)
is refused; the directory is the only place a task's files may come from or go to.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from headwater.daemon.engine.taskapi import TaskContext, TaskFailed
from headwater.daemon.engine.tasks.properties import flag, text_list, text_map
from headwater.daemon.flow.base import NamespaceFiles
from headwater.daemon.storage import URI_PREFIX


def relative_path(name: str, what: str) -> PurePosixPath:
    """`name` as a relative path that stays inside its folder; TaskFailed otherwise."""
    path = PurePosixPath(name.strip())
    if not name.strip() or path == PurePosixPath("."):
        raise TaskFailed(f"{what}: a file name is empty")
    if path.is_absolute():
        raise TaskFailed(f"{what}: {name!r} is an absolute path; give a path inside the directory")
    if ".." in path.parts:
        raise TaskFailed(f"{what}: {name!r} leaves the working directory ('..' is not allowed)")
    return path


def target(workdir: Path, name: str, what: str) -> Path:
    """Where the file `name` goes in `workdir`, refused when it would end up outside."""
    path = workdir / relative_path(name, what)
    root = workdir.resolve()
    if not path.resolve().is_relative_to(root):
        raise TaskFailed(f"{what}: {name!r} leads out of the working directory (a symbolic link)")
    return path


def write_files(workdir: Path, files: Mapping[str, bytes], what: str) -> list[str]:
    """Write each file (path inside `workdir` to content); return the paths written."""
    for name in files:
        target(workdir, name, what)  # check every path before writing any file
    for name, content in files.items():
        path = target(workdir, name, what)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        except OSError as exc:
            raise TaskFailed(f"{what}: cannot write {name!r}: {exc.strerror or exc}") from exc
    return [str(relative_path(name, what)) for name in files]


def input_files(ctx: TaskContext, value: dict[str, Any] | str | None) -> dict[str, bytes]:
    """The rendered `inputFiles`: path to content. Content that is exactly a
    `kestra:///…` URI is that file from internal storage (Kestra's convention)."""
    files = text_map(ctx, value, "inputFiles")
    return {name: _content(ctx, name, text) for name, text in files.items()}


def _content(ctx: TaskContext, name: str, text: str) -> bytes:
    uri = text.strip()
    if uri.startswith(URI_PREFIX) and not any(c.isspace() for c in uri):
        try:
            return ctx.storage.get(uri)
        except Exception as exc:  # the storage seam's errors are its own kinds
            raise TaskFailed(f"inputFiles: {name!r}: cannot read {uri}: {exc}") from exc
    return text.encode("utf-8")


def namespace_files(ctx: TaskContext, spec: NamespaceFiles | None) -> dict[str, bytes]:
    """The namespace files to write, when `namespaceFiles` is present and enabled."""
    if spec is None or not flag(ctx, spec.enabled, "namespaceFiles.enabled"):
        return {}
    include = text_list(ctx, spec.include, "namespaceFiles.include") or None
    exclude = text_list(ctx, spec.exclude, "namespaceFiles.exclude") or None
    return dict(ctx.namespace_files(include, exclude))


def check_patterns(patterns: list[str]) -> None:
    """Refuse `outputFiles` globs that could match outside the working directory."""
    for pattern in patterns:
        relative_path(pattern, "outputFiles")


def collect(ctx: TaskContext, workdir: Path, patterns: list[str]) -> dict[str, str]:
    """Keep the files `patterns` match in internal storage: relative path to URI.

    A pattern that matches nothing is logged as a warning, not an error. Symbolic links
    are not followed out of the directory: a script could point one at any file.
    """
    kept: dict[str, str] = {}
    for pattern in patterns:
        files = _matches(workdir, pattern)
        if not files:
            ctx.log("WARN", f"outputFiles: no file matches {pattern!r}")
        for name, path in files:
            if not path.resolve().is_relative_to(workdir.resolve()):
                ctx.log("WARN", f"outputFiles: {name!r} links out of the working directory")
            elif name not in kept:
                kept[name] = _keep(ctx, name, path)
    return kept


def _matches(workdir: Path, pattern: str) -> list[tuple[str, Path]]:
    found = sorted(workdir.glob(pattern.strip()))
    return [(path.relative_to(workdir).as_posix(), path) for path in found if path.is_file()]


def _keep(ctx: TaskContext, name: str, path: Path) -> str:
    try:
        return ctx.storage.put_file(ctx.output_key(name), path)
    except Exception as exc:  # the storage seam's errors are its own kinds
        raise OutputFileError(f"cannot keep output file {name!r}: {exc}") from exc


class OutputFileError(Exception):
    """An output file could not be put in internal storage (after the command ran)."""
