"""The flows repository contract: folders are namespaces, file names are ids.

`scan` reads a flows folder from disk, checks the contract of DESIGN.md (folder names,
`_files/`, no symbolic links, size limits, one file per id, `namespace:` and `id:`
equal to where the file is), validates every flow, and checks references between
flows (a subflow or flow trigger naming a flow that does not exist) and to namespace
files (a FILE input defaulting to `nsfile:///path` that is not in `_files/`).
"""

from __future__ import annotations

import gc
import os
import re
import stat
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

from headwater.daemon import defaults
from headwater.daemon.errors import Diagnostic, Position
from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.inputs import NAMESPACE_FILE_PREFIX, namespace_file_path
from headwater.daemon.flow.validate import FlowFile, validate_text
from headwater.daemon.flow.walk import iter_tasks
from headwater.daemon.lifeline import exit_with
from headwater.daemon.yamlsource import Path, format_path

# A pool, and a .headwaterignore, are the exception: `headwater validate` of one file
# imports neither (issue 12).
if TYPE_CHECKING:
    import pathspec

FOLDER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


PARALLEL_THRESHOLD = 200  # flows below which starting processes costs more than it saves


def _validate_in_processes(located: list[Located], jobs: int) -> list[FlowFile]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("forkserver")
    chunk = max(1, len(located) // (jobs * 8))
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=exit_with, initargs=(os.getpid(),)
    )
    with pool:
        return list(pool.map(_validate_quietly, located, chunksize=chunk))


def _validate_quietly(item: Located) -> FlowFile:
    with paused_gc():
        result = validate_located(item)
    if result.source is not None and result.flow is None:
        result.source = result.source.without_nodes()  # positions are in the diagnostics
    return result


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while many flows are parsed.

    Parsing makes millions of small objects and no reference cycles; the collector
    would walk the whole growing heap again and again (half the time of a 10,000-flow
    validation). It runs once at the end instead.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # Move what was made into the oldest generation without walking it: the next
        # collections would otherwise walk every object just parsed (a second for
        # 10,000 flows) to find no garbage.
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


@dataclass
class FlowsTree:
    """What a flows folder holds, and every problem found in it."""

    flows: list[FlowFile] = field(default_factory=list)
    namespace_files: dict[str, list[str]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def all_diagnostics(self) -> list[Diagnostic]:
        found = [*self.diagnostics, *(d for f in self.flows for d in f.diagnostics)]
        return sorted(set(found), key=Diagnostic.sort_key)

    @property
    def valid(self) -> bool:
        return not self.all_diagnostics


@dataclass(frozen=True)
class Located:
    """A flow file found on disk: where it is and what it must declare."""

    path: FsPath
    display: str
    namespace: str | None
    flow_id: str | None


def load_ignore(repo_root: FsPath) -> pathspec.GitIgnoreSpec | None:
    ignore = repo_root / defaults.IGNORE_FILE
    if not ignore.is_file():
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(ignore.read_text(encoding="utf-8").splitlines())


def scan(
    repo_root: FsPath, flows_dir: str = defaults.DEFAULT_FLOWS_DIR, jobs: int = 1
) -> FlowsTree:
    """Validate the flows folder `repo_root/flows_dir` against the repository contract.

    With `jobs` > 1 a large folder is parsed by that many processes.
    """
    tree = FlowsTree()
    ignore = load_ignore(repo_root)
    located: list[Located] = []
    top = repo_root / flows_dir
    for entry in _walk(top, repo_root, ignore, tree):
        _classify(entry, repo_root, top, tree, located)
    _check_duplicate_ids(located, tree)
    if jobs > 1 and len(located) >= PARALLEL_THRESHOLD:
        tree.flows = _validate_in_processes(located, jobs)
    else:
        with paused_gc():
            tree.flows = [validate_located(item) for item in located]
    check_references(tree.flows)
    check_trigger_loops(tree.flows)
    files = {namespace: set(paths) for namespace, paths in tree.namespace_files.items()}
    check_namespace_files(tree.flows, lambda ns: files.get(ns, set()), _rel(top, repo_root))
    return tree


def _rel(path: FsPath, root: FsPath) -> str:
    return path.relative_to(root).as_posix()


def _walk(
    top: FsPath, repo_root: FsPath, ignore: pathspec.GitIgnoreSpec | None, tree: FlowsTree
) -> Iterator[os.DirEntry[str]]:
    """Every file under `top` (sorted, symlinks reported and never followed)."""
    try:
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError as exc:
        tree.diagnostics.append(
            Diagnostic(Position(_rel(top, repo_root), 1, 1), f"cannot read: {exc}")
        )
        return
    for entry in entries:
        rel = _rel(FsPath(entry.path), repo_root)
        if ignore is not None and ignore.match_file(
            rel + ("/" if entry.is_dir(follow_symlinks=False) else "")
        ):
            continue
        if entry.is_symlink():
            tree.diagnostics.append(
                Diagnostic(
                    Position(rel, 1, 1),
                    "symbolic links are not allowed in the flows folder "
                    "(Headwater never follows them); replace it with the file itself",
                )
            )
        elif entry.is_dir(follow_symlinks=False):
            if entry.name == ".git" or (os.path.exists(os.path.join(entry.path, ".git"))):
                continue  # a submodule
            yield from _walk(FsPath(entry.path), repo_root, ignore, tree)
        elif stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
            yield entry


@dataclass(frozen=True)
class Place:
    """What a path under the flows folder is, by the repository contract."""

    kind: Literal["flow", "namespace_file", "other"]
    namespace: str | None = None
    flow_id: str | None = None
    inner: str | None = None
    """For a namespace file: its path inside `_files/`."""
    problems: tuple[str, ...] = ()


def place_of(parts: tuple[str, ...], flows_dir: str = defaults.DEFAULT_FLOWS_DIR) -> Place:
    """Classify a path, given as its parts relative to the flows folder."""
    folders, name = parts[:-1], parts[-1]
    if defaults.NAMESPACE_FILES_DIR in folders:
        index = folders.index(defaults.NAMESPACE_FILES_DIR)
        if index == 0:
            problem = "_files/ must be inside a namespace folder (flows/<namespace>/_files/)"
            return Place("namespace_file", problems=(problem,))
        inner = "/".join((*folders[index + 1 :], name))
        return Place("namespace_file", ".".join(folders[:index]), inner=inner)
    if name.startswith(".") or not name.endswith(defaults.FLOW_FILE_SUFFIXES):
        return Place("other")  # README.md, .gitkeep and the like live beside flows
    problems = [
        f"folder '{folder}' is not a valid namespace segment: use lower-case letters, digits, "
        "_ and - (it must match ^[a-z0-9][a-z0-9_-]*$; nesting makes the dots)"
        for folder in folders
        if not FOLDER_NAME.fullmatch(folder)
    ]
    if not folders:
        problems.append(
            f"a flow file must be in a namespace folder, e.g. {flows_dir}/company/team/{name}"
        )
    return Place("flow", ".".join(folders), name.rsplit(".", 1)[0], problems=tuple(problems))


def _classify(
    entry: os.DirEntry[str], repo_root: FsPath, top: FsPath, tree: FlowsTree, out: list[Located]
) -> None:
    path = FsPath(entry.path)
    rel = _rel(path, repo_root)
    place = place_of(path.relative_to(top).parts, _rel(top, repo_root))
    if place.problems:
        tree.diagnostics += [Diagnostic(Position(rel, 1, 1), p) for p in place.problems]
    elif place.kind == "namespace_file" and place.namespace is not None and place.inner:
        _namespace_file(entry, rel, place.namespace, place.inner, tree)
    elif place.kind == "flow":
        out.append(Located(path, rel, place.namespace, place.flow_id))


def _namespace_file(
    entry: os.DirEntry[str], rel: str, namespace: str, inner: str, tree: FlowsTree
) -> None:
    problem = namespace_file_problem(entry.stat(follow_symlinks=False).st_size)
    if problem:
        tree.diagnostics.append(Diagnostic(Position(rel, 1, 1), problem))
        return
    tree.namespace_files.setdefault(namespace, []).append(inner)


def namespace_file_problem(size: int) -> str | None:
    if size > defaults.MAX_NAMESPACE_FILE_BYTES:
        return (
            f"namespace file is {size} bytes; the limit is "
            f"{defaults.MAX_NAMESPACE_FILE_BYTES} bytes (10 MiB)"
        )
    return None


def flow_file_problem(size: int) -> str | None:
    if size > defaults.MAX_FLOW_FILE_BYTES:
        return (
            f"flow file is {size} bytes; the limit is {defaults.MAX_FLOW_FILE_BYTES} bytes (1 MiB)"
        )
    return None


def _check_duplicate_ids(located: list[Located], tree: FlowsTree) -> None:
    seen: dict[tuple[str | None, str | None], Located] = {}
    for item in located:
        key = (item.namespace, item.flow_id)
        if key in seen:
            tree.diagnostics.append(
                Diagnostic(
                    Position(item.display, 1, 1),
                    f"flow {item.namespace}.{item.flow_id} is defined "
                    f"twice: {seen[key].display} and {item.display}; keep one of them",
                )
            )
        else:
            seen[key] = item


def validate_located(item: Located) -> FlowFile:
    """Validate one flow file and check it declares the namespace and id of its place."""
    try:
        problem = flow_file_problem(item.path.stat().st_size)
        if problem:
            return _file_error(item, problem)
        data = item.path.read_bytes()
    except OSError as exc:
        return _file_error(item, f"cannot read: {exc.strerror}")
    return validate_blob(data, item)


def validate_blob(data: bytes, item: Located) -> FlowFile:
    """Validate the bytes of a flow file (from disk or from git) placed at `item`."""
    problem = flow_file_problem(len(data))
    if problem:
        return _file_error(item, problem)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _file_error(item, f"flow file is not UTF-8 text: {exc.reason} at byte {exc.start}")
    return validate_placed(text, item)


def validate_placed(text: str, item: Located) -> FlowFile:
    result = validate_text(text, item.display)
    raw = result.raw
    if isinstance(raw, dict) and result.source is not None:
        extra = list(_identity_problems(raw, item))
        if extra:
            result.source = result.source.with_nodes()
            result.diagnostics = sorted(
                {*result.diagnostics, *(result.source.error(p, m) for p, m in extra)},
                key=Diagnostic.sort_key,
            )
            result.flow = None
    return result


def _identity_problems(raw: dict[str, Any], item: Located) -> Iterator[tuple[tuple[str], str]]:
    namespace, flow_id = raw.get("namespace"), raw.get("id")
    if item.namespace is not None and isinstance(namespace, str) and namespace != item.namespace:
        folder = item.display.rsplit("/", 1)[0]
        yield (
            ("namespace",),
            (
                f"namespace: '{namespace}' does not match the folder {folder}/, which is namespace "
                f"'{item.namespace}'; change it to namespace: {item.namespace} or move the file"
            ),
        )
    if item.flow_id is not None and isinstance(flow_id, str) and flow_id != item.flow_id:
        name = item.display.rsplit("/", 1)[-1]
        suffix = name[len(item.flow_id) :]
        yield (
            ("id",),
            (
                f"id: '{flow_id}' does not match the file name {name}; change it to id: "
                f"{item.flow_id} or rename the file to {flow_id}{suffix}"
            ),
        )


def _file_error(item: Located, message: str) -> FlowFile:
    return FlowFile(item.display, None, None, [Diagnostic(Position(item.display, 1, 1), message)])


# -- references between flows -------------------------------------------------------------


def check_references(
    flows: Iterable[FlowFile],
    known: set[tuple[str, str]] | None = None,
) -> None:
    """Add an error to each flow that names a flow that does not exist.

    `known` is the set of (namespace, id) that exist; by default the flows given
    (parsed far enough to read their namespace and id).
    """
    flows = list(flows)
    if known is None:
        known = {
            (f.raw["namespace"], f.raw["id"])
            for f in flows
            if isinstance(f.raw, dict)
            and isinstance(f.raw.get("namespace"), str)
            and isinstance(f.raw.get("id"), str)
        }
    for flow_file in flows:
        raw, doc = flow_file.raw, flow_file.source
        if not isinstance(raw, dict) or doc is None:
            continue
        add_errors(flow_file, list(_missing_references(raw, known)))


def add_errors(flow_file: FlowFile, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
    """Record (path, message) problems on a flow file, each placed at its path."""
    if not problems or flow_file.source is None:
        return
    doc = flow_file.source = flow_file.source.with_nodes()
    found = [doc.error(path, message) for path, message in problems]
    flow_file.diagnostics = sorted({*flow_file.diagnostics, *found}, key=Diagnostic.sort_key)
    flow_file.flow = None


Reference = tuple[tuple[str | int, ...], str, str, str]


def references(raw: dict[str, Any]) -> Iterator[Reference]:
    """(path, kind, namespace, flow id) of every literal reference to another flow."""
    for path, task in iter_tasks(raw):
        if _short(task, "task") == "core.flow.Subflow":
            yield from _reference(path, "subflow", task)
    for i, trig in _flow_triggers(raw):
        yield from _trigger_references(i, trig)


def _flow_triggers(raw: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    triggers = raw.get("triggers")
    for i, trig in enumerate(triggers if isinstance(triggers, list) else []):
        if _short(trig, "trigger") == "core.trigger.Flow":
            yield i, trig


def _trigger_references(i: int, trig: dict[str, Any]) -> Iterator[Reference]:
    conditions = trig.get("conditions")
    for j, cond in enumerate(conditions if isinstance(conditions, list) else []):
        if _short(cond, "condition") == "core.condition.ExecutionFlow":
            yield from _reference(("triggers", i, "conditions", j), "flow trigger", cond)
    pre = trig.get("preconditions")
    upstream = pre.get("flows") if isinstance(pre, dict) else None
    for j, item in enumerate(upstream if isinstance(upstream, list) else []):
        where = ("triggers", i, "preconditions", "flows", j)
        yield from _reference(where, "flow trigger", item)


def _short(item: Any, kind: reg.Kind) -> str | None:
    entry = reg.REGISTRY.resolve(item.get("type"), kind) if isinstance(item, dict) else None
    return entry.short if entry else None


def _reference(path: tuple[str | int, ...], kind: str, item: Any) -> Iterator[Reference]:
    if isinstance(item, dict):
        namespace, flow_id = item.get("namespace"), item.get("flowId")
        if _literal(namespace) and _literal(flow_id):
            yield path, kind, namespace, flow_id


def _literal(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and "{{" not in value and "{%" not in value


def _missing_references(
    raw: dict[str, Any], known: set[tuple[str, str]]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    for path, kind, namespace, flow_id in references(raw):
        if (namespace, flow_id) not in known:
            yield (
                path,
                (
                    f"{format_path(path)}: {kind} names flow {namespace}.{flow_id}, "
                    "which does not exist in the flows folder"
                ),
            )


# -- namespace files named by FILE inputs ---------------------------------------------------

FilePath = tuple[tuple[str | int, ...], str, str]
"""(path of an input's `defaults`, the input's id, the file's path inside `_files/`)."""


def namespace_file_defaults(raw: Any) -> list[FilePath]:
    """Every FILE input whose literal default names a namespace file (`nsfile:///path`);
    a malformed URI is left to the input's own checks."""
    inputs = raw.get("inputs") if isinstance(raw, dict) else None
    found: list[FilePath] = []
    for i, item in enumerate(inputs if isinstance(inputs, list) else []):
        if not isinstance(item, dict) or str(item.get("type", "")).upper() != "FILE":
            continue
        value = item.get("defaults")
        if _literal(value) and value.startswith(NAMESPACE_FILE_PREFIX):
            try:
                found.append(
                    (("inputs", i, "defaults"), str(item.get("id")), namespace_file_path(value))
                )
            except ValueError:
                continue
    return found


def namespace_files_folder(flows_dir: str, namespace: str) -> str:
    """Where a namespace's files are in the repository: `flows/company/team/_files/`."""
    folders = namespace.replace(".", "/")
    return f"{flows_dir.rstrip('/')}/{folders}/{defaults.NAMESPACE_FILES_DIR}/"


def missing_namespace_files(
    raw: Any, files: Container[str], folder: str, deleted: bool = False
) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, message) of each FILE default naming a file that is not in `files`;
    `deleted`: the file is there before the commit checked, which deletes it."""
    found = []
    for path, input_id, inner in namespace_file_defaults(raw):
        if inner in files:
            continue
        why = (
            f"which this commit deletes ({folder}{inner}); change this flow in the same commit"
            if deleted
            else f"which does not exist (there is no {folder}{inner})"
        )
        message = f"FILE input '{input_id}' defaults to namespace file {inner}, {why}"
        found.append((path, f"{format_path(path)}: {message}"))
    return found


def check_namespace_files(
    flows: Iterable[FlowFile], files_of: Callable[[str], Container[str]], flows_dir: str
) -> None:
    """Add an error to each flow whose FILE input defaults to a namespace file that its
    namespace does not have; `files_of(namespace)` gives the paths inside `_files/`."""
    for flow_file in flows:
        raw = flow_file.raw
        namespace = raw.get("namespace") if isinstance(raw, dict) else None
        if isinstance(namespace, str) and namespace_file_defaults(raw):
            folder = namespace_files_folder(flows_dir, namespace)
            add_errors(flow_file, missing_namespace_files(raw, files_of(namespace), folder))


# -- loops of flow triggers -----------------------------------------------------------------

FlowKey = tuple[str, str]
Edge = tuple[tuple[str | int, ...], FlowKey]
"""Where a flow trigger names an upstream flow, and that flow."""
RUN_TIME_CHAIN_LIMIT = 10  # said in the message; the bound itself lives in triggers/flowtrigger.py


def loop_edges(raw: Any) -> list[Edge]:
    """The upstream flows that enabled Flow triggers without an Expression condition name
    literally: the edges a loop of flow triggers is made of.

    An Expression condition may end a loop and a disabled trigger never fires, so those
    make no edge; a loop is only certain when every edge in it is unconditional.
    """
    if not isinstance(raw, dict):
        return []
    found: list[Edge] = []
    for i, trig in _flow_triggers(raw):
        conditions = trig.get("conditions")
        guarded = any(
            _short(c, "condition") == "core.condition.Expression"
            for c in (conditions if isinstance(conditions, list) else [])
        )
        if trig.get("disabled") is True or guarded:
            continue
        found += [(path, (ns, fid)) for path, _, ns, fid in _trigger_references(i, trig)]
    return found


def find_loop(start: FlowKey, downstream: Callable[[FlowKey], Iterable[FlowKey]]) -> list[FlowKey]:
    """The shortest cycle start -> … -> start along `downstream` (the flows an end
    starts), or [] when there is none."""
    parents: dict[FlowKey, FlowKey] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for following in downstream(node):
            if following == start:
                back = [node]
                while back[-1] != start:
                    back.append(parents[back[-1]])
                return [*reversed(back), start]
            if following not in parents:
                parents[following] = node
                queue.append(following)
    return []


def loop_problem(flow: FlowKey, edges: list[Edge], cycle: list[FlowKey]) -> tuple[Path, str]:
    """The error for `flow`, on the cycle `cycle` (flow first and last), at the place
    where its trigger names the flow before it."""
    before = cycle[-2]
    path = next(where for where, upstream in edges if upstream == before)
    if len(cycle) == 2:
        return path, (
            f"{format_path(path)}: a flow trigger cannot name its own flow "
            f"{flow[0]}.{flow[1]} (a flow never triggers itself); remove this condition"
        )
    names = " -> ".join(f"{ns}.{fid}" for ns, fid in cycle)
    return path, (
        f"{format_path(path)}: flow triggers make a loop: {names}; the end of each starts the "
        f"next, forever (at run time the chain stops after {RUN_TIME_CHAIN_LIMIT}). Remove one "
        "of these triggers, or give it an Expression condition that ends the loop"
    )


def check_trigger_loops(flows: Iterable[FlowFile]) -> None:
    """Add an error to each flow whose Flow trigger closes a loop among `flows`."""
    edges: dict[FlowKey, tuple[FlowFile, list[Edge]]] = {}
    downstream: dict[FlowKey, list[FlowKey]] = {}
    for flow_file in flows:
        raw = flow_file.raw
        found = loop_edges(raw)
        if found and isinstance(raw.get("namespace"), str) and isinstance(raw.get("id"), str):
            key = (raw["namespace"], raw["id"])
            edges[key] = (flow_file, found)
            for _, upstream in found:
                downstream.setdefault(upstream, []).append(key)
    for key, (flow_file, found) in edges.items():
        cycle = find_loop(key, lambda node: downstream.get(node, ()))
        if cycle:
            add_errors(flow_file, [loop_problem(key, found, cycle)])
