"""What `headwater validate` checks for each path it is given."""

from __future__ import annotations

from pathlib import Path

from headwater.daemon import defaults
from headwater.daemon.errors import Diagnostic
from headwater.daemon.flow.repository import (
    Located,
    check_references,
    check_trigger_loops,
    scan,
    validate_located,
)
from headwater.daemon.flow.validate import FlowFile


def check_paths(
    paths: tuple[Path, ...], flows_dir: str, jobs: int = 1
) -> tuple[list[FlowFile], list[Diagnostic]]:
    """Validate each path: a repository, a flows folder, a plain folder or a file."""
    flows: list[FlowFile] = []
    diagnostics: list[Diagnostic] = []
    for path in paths:
        found, problems = _check_one(path, flows_dir, jobs)
        flows += found
        diagnostics += problems
    return flows, sorted(set(diagnostics), key=Diagnostic.sort_key)


def _check_one(path: Path, flows_dir: str, jobs: int) -> tuple[list[FlowFile], list[Diagnostic]]:
    if path.is_dir():
        if (path / flows_dir).is_dir():
            tree = scan(path, flows_dir, jobs)
            return tree.flows, tree.all_diagnostics
        if path.resolve().name == Path(flows_dir).name:
            tree = scan(path.resolve().parent, Path(flows_dir).name, jobs)
            return tree.flows, tree.all_diagnostics
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix in defaults.FLOW_FILE_SUFFIXES and p.is_file() and "_files" not in p.parts
        )
        results = [validate_located(_loose(p)) for p in files]
        check_references(results)
        check_trigger_loops(results)
        return results, [d for r in results for d in r.diagnostics]
    result = validate_located(_placed(path, flows_dir))
    return [result], result.diagnostics


def _display(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _loose(path: Path) -> Located:
    return Located(path, _display(path), None, None)


def _placed(path: Path, flows_dir: str) -> Located:
    """A single file: its place is checked when it sits under a flows folder."""
    resolved = path.resolve()
    name = Path(flows_dir).name
    for parent in resolved.parents:
        if parent.name == name:
            folders = resolved.relative_to(parent).parts[:-1]
            if folders:
                return Located(path, _display(path), ".".join(folders), resolved.stem)
    return _loose(path)
