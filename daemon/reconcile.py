"""From a commit to the flows it deploys: what changed, whether it is valid, what to write.

`plan_commit` compares a commit with what is deployed, using the git tree diff (the
whole tree only on a first sync or when the deployed commit is gone), validates every
changed flow and the references between flows, and returns a `Reconciliation`: the
revisions to write, or every error found. It writes nothing; `Syncer` (sync.py)
applies it in one transaction, so a commit deploys whole or not at all.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from pathlib import PurePosixPath
from typing import Any, Protocol

import pathspec

from headwater.daemon import defaults
from headwater.daemon.errors import Diagnostic, Position
from headwater.daemon.flow.inputs import NAMESPACE_FILE_PREFIX
from headwater.daemon.flow.repository import (
    Located,
    add_errors,
    check_namespace_files,
    check_references,
    find_loop,
    loop_edges,
    loop_problem,
    missing_namespace_files,
    namespace_file_problem,
    namespace_files_folder,
    paused_gc,
    place_of,
    references,
    validate_blob,
)
from headwater.daemon.flow.validate import FlowFile
from headwater.daemon.git import Mirror
from headwater.daemon.lifeline import exit_with
from headwater.daemon.store.store import Row

log = logging.getLogger(__name__)

SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"
POOL_THRESHOLD = 200  # changed flows above which validation runs in a process pool
ROW_LOOKUPS = 100  # changed files above which every deployed flow is read at once


@dataclass
class FlowChange:
    """One flow the commit adds, changes or deletes."""

    namespace: str
    flow_id: str
    path: str
    action: str  # "add", "update", "delete"
    blob: str | None = None
    source: str | None = None
    parsed: FlowFile | None = None
    """The validated file: source and diagnostics (without its model: see _validate_one)."""
    references: list[tuple[str, str, str]] = field(default_factory=list)
    """(namespace, flow id, kind) of the flows it names (read where it was parsed)."""


@dataclass
class Reconciliation:
    head: str
    base: str | None
    forced: bool = False
    changes: list[FlowChange] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    namespace_files_changed: int = 0

    @property
    def valid(self) -> bool:
        return not self.errors

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)


class DeployedState(Protocol):
    """What is deployed: the store's `Tx` in the daemon, a commit's tree for `plan`."""

    def deployed_flows(self) -> list[Row]:
        """Deployed flows: namespace, flow_id, path, blob."""
        ...

    def flow(self, namespace: str, flow_id: str) -> Row | None:
        """One flow (namespace, flow_id, path, blob, deleted), or None."""
        ...

    def referencing(self, targets: Iterable[tuple[str, str]]) -> list[Row]:
        """Deployed flows naming a target: namespace, flow_id, ref_namespace, ref_flow_id, kind."""
        ...


Key = tuple[str, str]


class _Deployed:
    """The deployed flows by (namespace, id): all read at once to compare whole trees, one
    by one for a diff, so that a one-file commit over 10,000 flows reads a few rows."""

    def __init__(self, tx: DeployedState, everything: bool) -> None:
        self._tx = tx
        self._rows: dict[Key, Row | None] = {}
        self._complete = False
        if everything:
            self.all()

    def get(self, key: Key) -> Row | None:
        if not self._complete and key not in self._rows:
            row = self._tx.flow(*key)
            self._rows[key] = row if row is not None and not row.get("deleted") else None
        return self._rows.get(key)

    def all(self) -> dict[Key, Row]:
        if not self._complete:
            flows = self._tx.deployed_flows()
            self._rows = {(f["namespace"], f["flow_id"]): f for f in flows}
            self._complete = True
        return {key: row for key, row in self._rows.items() if row is not None}


DeploymentCheck = Callable[[dict[str, Any]], list[tuple[tuple[str | int, ...], str]]]
"""A raw flow -> its (path, message) problems under this deployment's settings (the
directories file triggers may read, say): what `validate` cannot know."""


def plan_commit(
    tx: DeployedState,
    mirror: Mirror,
    head: str,
    base: str | None,
    flows_dir: str = defaults.DEFAULT_FLOWS_DIR,
    allow_empty: bool = False,
    pool: ProcessPoolExecutor | None = None,
    check: DeploymentCheck | None = None,
) -> Reconciliation:
    """What deploying `head` over the deployed `base` means (read-only); `check` adds
    the problems that depend on this deployment's settings to each changed flow."""
    result = Reconciliation(head=head, base=base)
    if base is not None and not mirror.exists(base):
        base = None  # the deployed commit is gone from history: compare whole trees
        result.forced = True
    elif base is not None and not mirror.is_ancestor(base, head):
        result.forced = True
    ignore = _ignore_spec(mirror, head)
    if base is not None and _ignore_spec_text(mirror, base) != _ignore_spec_text(mirror, head):
        base = None  # what is ignored changed: look at everything again
    prefix = flows_dir.rstrip("/") + "/"
    present: set[tuple[str, str]] = set()
    deleted_paths: set[str] = set()
    if base is None:
        entries = mirror.tree(head, prefix)
        candidates: list[tuple[str, str | None, str | None]] = [
            (e.path, e.blob, e.mode) for e in entries
        ]
    else:
        diff = mirror.diff(base, head, prefix)
        candidates = [(c.path, c.new_blob, c.new_mode) for c in diff if c.status != "D"]
        deleted_paths = {c.path for c in diff if c.status == "D"}
    # A few changed files are looked up one by one; past that, one read of every row is cheaper.
    many = len(candidates) + len(deleted_paths) > ROW_LOOKUPS
    deployed = _Deployed(tx, everything=base is None or many)
    seen: dict[tuple[str, str], str] = {}
    to_validate: list[tuple[Located, str]] = []
    for path, blob, mode in candidates:
        if ignore is not None and ignore.match_file(path):
            continue
        place = place_of(PurePosixPath(path).relative_to(flows_dir).parts, flows_dir)
        if mode == SUBMODULE_MODE or place.kind == "other":
            continue
        if mode == SYMLINK_MODE:
            result.errors.append(
                _file_error(
                    path,
                    "symbolic links are not allowed in the flows "
                    "folder (Headwater never follows them); replace it "
                    "with the file itself",
                )
            )
            continue
        if place.problems:
            result.errors += [_file_error(path, p) for p in place.problems]
            continue
        if place.kind == "namespace_file":
            result.namespace_files_changed += 1
            continue
        assert place.namespace is not None and place.flow_id is not None and blob is not None
        key = (place.namespace, place.flow_id)
        if key in seen:
            result.errors.append(
                _file_error(
                    path,
                    f"flow {key[0]}.{key[1]} is defined twice: "
                    f"{seen[key]} and {path}; keep one of them",
                )
            )
            continue
        seen[key] = path
        if base is None:
            present.add(key)
        current = deployed.get(key)
        other = current.get("path") if current else None
        if base is not None and other not in (None, path) and other not in deleted_paths:
            result.errors.append(
                _file_error(
                    path,
                    f"flow {key[0]}.{key[1]} is defined twice: "
                    f"{other} and {path}; keep one of them",
                )
            )
            continue
        if current is not None and current.get("blob") == blob and other == path:
            continue  # the same blob: unchanged
        to_validate.append((Located(FsPath(path), path, place.namespace, place.flow_id), blob))
    if base is None:
        gone = [f for key, f in deployed.all().items() if key not in present]
    else:
        gone = [
            f
            for f in _deployed_at(deployed, deleted_paths, flows_dir)
            if (f["namespace"], f["flow_id"]) not in seen
        ]
    _check_namespace_file_sizes(mirror, head, prefix, result, candidates)
    parsed = _validate_all(mirror, to_validate, pool)
    for (item, blob), (flow_file, refs) in zip(to_validate, parsed, strict=True):
        key = (item.namespace or "", item.flow_id or "")
        action = "update" if deployed.get(key) is not None else "add"
        source = flow_file.source.text if flow_file.source else None
        result.changes.append(
            FlowChange(key[0], key[1], item.display, action, blob, source, flow_file, refs)
        )
    for flow in gone:
        result.changes.append(
            FlowChange(flow["namespace"], flow["flow_id"], flow.get("path") or "", "delete")
        )
    _check_references(tx, result, deployed)
    _check_trigger_loops(tx, result)
    _check_namespace_files(mirror, head, flows_dir, result, deployed, deleted_paths)
    if check is not None:
        for change in result.changes:
            if change.parsed is not None and isinstance(change.parsed.raw, dict):
                add_errors(change.parsed, check(change.parsed.raw))
    result.errors += [d for c in result.changes if c.parsed for d in c.parsed.diagnostics]
    if result.count("delete") and not allow_empty:
        before = len(deployed.all())
        if before + result.count("add") - result.count("delete") == 0:
            result.errors.append(
                Diagnostic(
                    Position(flows_dir, 1, 1),
                    f"this commit would delete every deployed flow "
                    f"({before}); refusing it (an operator can allow empty deployments)",
                )
            )
    result.errors = sorted(set(result.errors), key=Diagnostic.sort_key)
    return result


def _deployed_at(deployed: _Deployed, paths: Iterable[str], flows_dir: str) -> Iterator[Row]:
    """The deployed flows whose files are these paths (deleted ones, in a diff)."""
    for path in paths:
        place = place_of(PurePosixPath(path).relative_to(flows_dir).parts, flows_dir)
        if place.kind != "flow" or place.problems:
            continue  # never deployed
        row = deployed.get((place.namespace or "", place.flow_id or ""))
        if row is not None and row.get("path") == path:
            yield row


def _file_error(path: str, message: str) -> Diagnostic:
    return Diagnostic(Position(path, 1, 1), message)


def _ignore_spec_text(mirror: Mirror, commit: str) -> bytes:
    return mirror.read_file(commit, defaults.IGNORE_FILE) or b""


def _ignore_spec(mirror: Mirror, commit: str) -> pathspec.GitIgnoreSpec | None:
    text = _ignore_spec_text(mirror, commit)
    if not text:
        return None
    return pathspec.GitIgnoreSpec.from_lines(text.decode("utf-8", "replace").splitlines())


def _check_namespace_file_sizes(
    mirror: Mirror,
    head: str,
    prefix: str,
    result: Reconciliation,
    candidates: Sequence[tuple[str, str | None, str | None]],
) -> None:
    changed = {p for p, _, _ in candidates if f"/{defaults.NAMESPACE_FILES_DIR}/" in p}
    if not changed:
        return
    for entry in mirror.tree(head, prefix):
        if entry.path in changed:
            problem = namespace_file_problem(entry.size)
            if problem:
                result.errors.append(_file_error(entry.path, problem))


Validated = tuple[FlowFile, list[tuple[str, str, str]]]
"""A flow file after validation, and the flows it names."""


def _validate_all(
    mirror: Mirror, items: list[tuple[Located, str]], pool: ProcessPoolExecutor | None
) -> list[Validated]:
    blobs = mirror.read_blobs(blob for _, blob in items)
    work = [(item, blobs[blob]) for item, blob in items]
    # The results are many small objects and no cycles: collecting while they arrive
    # would walk the growing heap again and again (see paused_gc).
    with paused_gc():
        if pool is not None and len(work) >= POOL_THRESHOLD:
            size = max(1, len(work) // (4 * (os.cpu_count() or 1)))
            chunks = [work[i : i + size] for i in range(0, len(work), size)]
            return [flow for chunk in pool.map(_validate_chunk, chunks) for flow in chunk]
        return [_validate_one(w) for w in work]


def _validate_chunk(work: list[tuple[Located, bytes]]) -> list[Validated]:
    """A pool worker's share, validated with the collector paused as in `headwater validate`."""
    with paused_gc():
        return [_validate_one(w) for w in work]


def _validate_one(work: tuple[Located, bytes]) -> Validated:
    """The file's source and problems, and the flows it names; not its model, which a sync
    never uses (the executor builds one from the source) and which is half its memory."""
    item, data = work
    result = validate_blob(data, item)
    source = result.source
    if source is not None and result.flow is None:
        source = source.without_nodes()  # positions are in the diagnostics
    named = list(flow_references(result.raw))
    return FlowFile(result.path, source, None, result.diagnostics, result.warnings), named


def validation_pool() -> ProcessPoolExecutor:
    """Processes for big syncs, so parsing does not starve the daemon's threads (GIL).

    The fork server imports the validator once and forks the workers from it, so a
    worker starts at once instead of importing Headwater anew (about 1.5 s each). Each
    worker exits as soon as this process is gone, even killed (`lifeline`).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(
        max_workers=os.cpu_count() or 1,
        mp_context=context,
        initializer=exit_with,
        initargs=(os.getpid(),),
    )


def _check_references(tx: DeployedState, result: Reconciliation, deployed: _Deployed) -> None:
    deleted = {(c.namespace, c.flow_id) for c in result.changes if c.action == "delete"}
    added = {(c.namespace, c.flow_id) for c in result.changes if c.action == "add"}
    named = {(ns, fid) for c in result.changes for ns, fid, _ in c.references}
    known = {  # of the flows named (only those are looked up), the ones that will exist
        key
        for key in named
        if key in added or (key not in deleted and deployed.get(key) is not None)
    }
    # Only a flow that names others can name a missing one: the rest need no second walk.
    changed = [c.parsed for c in result.changes if c.parsed is not None and c.references]
    check_references(changed, known)
    touched = {(c.namespace, c.flow_id) for c in result.changes}
    for ref in tx.referencing(deleted):
        owner = (ref["namespace"], ref["flow_id"])
        if owner in touched:
            continue  # changed in this commit: checked above with its new source
        row = deployed.get(owner)
        path = (row or {}).get("path") or f"{owner[0]}/{owner[1]}"
        kind = "subflow" if ref["kind"] == "subflow" else "flow trigger"
        result.errors.append(
            _file_error(
                path,
                f"{kind} names flow {ref['ref_namespace']}.{ref['ref_flow_id']}, "
                "which this commit deletes; change this flow in the same commit",
            )
        )


def _check_namespace_files(
    mirror: Mirror,
    head: str,
    flows_dir: str,
    result: Reconciliation,
    deployed: _Deployed,
    deleted_paths: set[str],
) -> None:
    """Refuse FILE inputs defaulting to a namespace file (`nsfile:///path`) that `head`
    does not have: in the flows this commit changes, and in the deployed flows of the
    namespaces whose files it deletes."""
    listed: dict[str, set[str]] = {}

    def files_of(namespace: str) -> set[str]:
        if namespace not in listed:
            folder = namespace_files_folder(flows_dir, namespace)
            entries = mirror.tree(head, folder)
            listed[namespace] = {
                e.path[len(folder) :]
                for e in entries
                if e.mode not in (SYMLINK_MODE, SUBMODULE_MODE) and e.path.startswith(folder)
            }
        return listed[namespace]

    changed = [c.parsed for c in result.changes if c.action != "delete" and c.parsed is not None]
    check_namespace_files(changed, files_of, flows_dir)
    places = [
        place_of(PurePosixPath(p).relative_to(flows_dir).parts, flows_dir) for p in deleted_paths
    ]
    emptied = {p.namespace for p in places if p.kind == "namespace_file" and p.namespace}
    if emptied:
        touched = {(c.namespace, c.flow_id) for c in result.changes}
        rows = [
            row
            for key, row in deployed.all().items()
            if key[0] in emptied and key not in touched and row.get("blob")
        ]
        result.errors += _unchanged_flows_missing_files(mirror, rows, files_of, flows_dir)


def _unchanged_flows_missing_files(
    mirror: Mirror, rows: list[Row], files_of: Callable[[str], set[str]], flows_dir: str
) -> list[Diagnostic]:
    """Errors of deployed flows, not changed by the commit, whose FILE defaults name a
    namespace file the commit deletes."""
    blobs = mirror.read_blobs(row["blob"] for row in rows)
    found: list[Diagnostic] = []
    for row in rows:
        data = blobs[row["blob"]]
        if NAMESPACE_FILE_PREFIX.encode() not in data:
            continue  # the common case: no flow to parse
        path = row.get("path") or f"{row['namespace']}/{row['flow_id']}"
        item = Located(FsPath(path), path, row["namespace"], row["flow_id"])
        flow_file = validate_blob(data, item)
        folder = namespace_files_folder(flows_dir, row["namespace"])
        problems = missing_namespace_files(flow_file.raw, files_of(row["namespace"]), folder, True)
        if problems and flow_file.source is not None:
            doc = flow_file.source.with_nodes()
            found += [doc.error(where, message) for where, message in problems]
    return found


GUARDED = "guarded trigger"
"""Kind of a reference by a flow trigger that is disabled or has an Expression condition:
it cannot make a certain loop ("trigger" references can)."""


def flow_references(raw: Any) -> Iterable[tuple[str, str, str]]:
    """(namespace, flow id, kind) of the literal references in a raw flow: kind is
    "subflow", "trigger" or GUARDED."""
    if not isinstance(raw, dict):
        return []
    loops = {path for path, _ in loop_edges(raw)}
    return [
        (ns, fid, "subflow" if kind == "subflow" else "trigger" if path in loops else GUARDED)
        for path, kind, ns, fid in references(raw)
    ]


def _check_trigger_loops(tx: DeployedState, result: Reconciliation) -> None:
    """Refuse a commit whose flow triggers close a loop (see repository.loop_edges).

    A new loop goes through a changed flow, so only cycles through changed flows are
    looked for; the deployed flows' edges come from the references table ("trigger"
    rows, kept by `flow_references`), the changed flows' from their new source.
    """
    gone = {(c.namespace, c.flow_id) for c in result.changes if c.action == "delete"}
    changed = {
        (c.namespace, c.flow_id): c.parsed
        for c in result.changes
        if c.action != "delete" and c.parsed is not None
    }
    edges = {key: loop_edges(parsed.raw) for key, parsed in changed.items()}
    following: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key, found in edges.items():
        for _, upstream in found:
            following.setdefault(upstream, []).append(key)
    read: dict[tuple[str, str], list[tuple[str, str]]] = {}

    def downstream(node: tuple[str, str]) -> list[tuple[str, str]]:
        if node in gone:
            return []
        if node not in read:
            read[node] = [
                (row["namespace"], row["flow_id"])
                for row in tx.referencing([node])
                if row["kind"] == "trigger"
                and (row["namespace"], row["flow_id"]) not in changed
                and (row["namespace"], row["flow_id"]) not in gone
            ]
        return read[node] + following.get(node, [])

    for key, found in edges.items():
        cycle = find_loop(key, downstream) if found else []
        if cycle:
            add_errors(changed[key], [loop_problem(key, found, cycle)])
