"""The flow corpus: realistic valid flows, and invalid flows with their exact diagnostics.

`tests/corpus/valid/*.yaml` must validate with no diagnostic. Together they must use
every property of every model the flow language has (each task, trigger, condition,
task-runner and input type, the retry kinds, the flow itself and the models nested in
them) and every name of every registered type, so that a rule rejecting a valid Kestra
construct shows up here. Each starts with two header lines that say what a manual run
of it (no inputs given, defaults used) ends in and what that run needs beyond the plain
engine:

    # outcome: SUCCESS
    # needs: python, secrets

`tests/corpus/invalid/*.yaml` each hold a mistake a user makes, and start with the
diagnostics the validator must print for it, in order, as `# expect: LINE:COL: MESSAGE`.
A `# bug: REASON` line among them marks expectations the validator does not meet yet
(a known validator bug): the test is then an expected failure, strict so that a fix
shows up.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from headwater.daemon.flow.base import ConstantRetry, ExponentialRetry, RandomRetry
from headwater.daemon.flow.inputs import INPUT_TYPES
from headwater.daemon.flow.model import Flow
from headwater.daemon.flow.registry import REGISTRY, TypeEntry
from headwater.daemon.flow.validate import FlowFile, validate_text
from headwater.daemon.flow.walk import iter_tasks

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))
MIN_VALID, MIN_INVALID = 60, 40

KINDS = ("task", "trigger", "condition", "runner")
RETRY_MODELS: dict[str, type[BaseModel]] = {
    "constant": ConstantRetry,
    "exponential": ExponentialRetry,
    "random": RandomRetry,
}
OUTCOMES = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "PAUSED")
NEEDS = ("triggers", "docker", "network", "subflow", "pause", "secrets", "files", "python", "node")

# What FLOWS.md lists for expressions; the valid corpus uses each at least once.
FILTERS = (
    *("json", "toJson", "upper", "lower", "trim", "default", "length", "join", "first"),
    *("last", "keys", "values", "date", "dateAdd", "timestamp", "slugify", "replace"),
    *("split", "startsWith", "endsWith", "number", "abs", "sha256", "md5", "b64encode"),
    "b64decode",
)
FUNCTIONS = ("now", "secret", "read", "render", "json", "fromJson", "uuid")

# Properties a model accepts that Kestra does not have, so a realistic corpus leaves
# them out: a random retry takes minInterval and maxInterval, never interval.
NOT_IN_KESTRA: set[tuple[type[BaseModel], str]] = set()

EXPECT = re.compile(r"# expect: (\d+):(\d+): (.+)")
BUG = re.compile(r"# bug: (.+)")
OUTCOME = re.compile(r"# outcome: (\S+)")
NEEDS_LINE = re.compile(r"# needs:(.*)")
TAGS = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
FILTER_NAME = re.compile(r"(?<!\|)\|\s*([A-Za-z_]\w*)")
FUNCTION_NAME = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*\(")


def _rel(path: Path) -> str:
    return path.relative_to(CORPUS.parent.parent).as_posix()


@functools.cache
def _validated(path: Path) -> FlowFile:
    return validate_text(path.read_text(encoding="utf-8"), _rel(path))


def _shown(result: FlowFile) -> list[str]:
    return [f"{d.position.line}:{d.position.column}: {d.message}" for d in result.diagnostics]


# -- the files validate as they say -----------------------------------------------------


def test_corpus_sizes() -> None:
    assert len(VALID) >= MIN_VALID, f"only {len(VALID)} valid flows in {CORPUS / 'valid'}"
    assert len(INVALID) >= MIN_INVALID, f"only {len(INVALID)} invalid flows in {CORPUS}/invalid"


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_flow_has_no_diagnostics(path: Path) -> None:
    result = _validated(path)
    assert _shown(result) == []
    assert result.valid


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_flow_has_exactly_the_expected_diagnostics(
    path: Path, request: pytest.FixtureRequest
) -> None:
    expected, bug = _expectations(path)
    assert expected, f"{path.name} states no '# expect: LINE:COL: MESSAGE' line"
    if bug:
        # The file states what the validator should say; until it does, this fails
        # (strict: once the validator is fixed, the marker must go).
        request.applymarker(pytest.mark.xfail(reason=f"validator bug: {bug}", strict=True))
    result = _validated(path)
    assert _shown(result) == expected
    assert not result.valid


def _expectations(path: Path) -> tuple[list[str], str]:
    """The `# expect:` lines at the top of a file, as `LINE:COL: MESSAGE`, and the
    `# bug:` line that marks them as what a known-faulty validator should print."""
    found, bug = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        match, known = EXPECT.fullmatch(line.rstrip()), BUG.fullmatch(line.rstrip())
        if match:
            found.append(f"{match[1]}:{match[2]}: {match[3]}")
        elif known:
            bug = known[1]
        else:
            break
    return found, bug


# -- headers of the valid files -----------------------------------------------------------


@dataclass(frozen=True)
class Header:
    outcome: str
    needs: tuple[str, ...]


def _header(path: Path) -> Header:
    lines = path.read_text(encoding="utf-8").splitlines()[:2]
    assert len(lines) == 2, f"{path.name}: the two header lines are missing"
    outcome, needs = OUTCOME.fullmatch(lines[0]), NEEDS_LINE.fullmatch(lines[1])
    assert outcome, f"{path.name}: line 1 must be '# outcome: STATE', got {lines[0]!r}"
    assert needs, f"{path.name}: line 2 must be '# needs: a, b' (may be empty), got {lines[1]!r}"
    listed = tuple(n.strip() for n in needs[1].split(",") if n.strip())
    return Header(outcome[1], listed)


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_flow_header_is_well_formed(path: Path) -> None:
    header = _header(path)
    assert header.outcome in OUTCOMES, f"outcome {header.outcome} is not one of {OUTCOMES}"
    unknown = [n for n in header.needs if n not in NEEDS]
    assert not unknown, f"unknown needs {unknown}; known: {', '.join(NEEDS)}"
    assert len(set(header.needs)) == len(header.needs), f"needs listed twice: {header.needs}"
    raw = _validated(path).raw
    assert raw["id"] == path.stem, "the flow id must equal the file name"
    assert re.fullmatch(r"corpus\.[a-z0-9_]+", raw["namespace"]), raw["namespace"]


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_flow_needs_cover_what_it_uses(path: Path) -> None:
    """A lower bound on `# needs:`, from what the flow visibly uses."""
    header = _header(path)
    missing = sorted(_derived_needs(path) - set(header.needs))
    assert not missing, f"{path.name} uses what needs {missing} but does not list it"


def _derived_needs(path: Path) -> set[str]:
    raw = _validated(path).raw
    text = " ".join(_tags(path))
    shorts = {_short(task.get("type")) for _, task in iter_tasks(raw)}
    runners = {
        _short((task.get("taskRunner") or {}).get("type")) for _, task in iter_tasks(raw)
    } - {None}
    needs = set()
    if raw.get("triggers"):
        needs.add("triggers")
    if any(s and s.startswith("scripts.python.") for s in shorts):
        needs.add("python")
    if any(s and s.startswith("scripts.node.") for s in shorts):
        needs.add("node")
    if "scripts.runner.docker.Docker" in runners:
        needs.add("docker")
    if "core.flow.Subflow" in shorts:
        needs.add("subflow")
    if "core.flow.Pause" in shorts:
        needs.add("pause")
    if "core.http.Request" in shorts:
        needs.add("network")
    if re.search(r"(?<![\w.])secret\s*\(", text):
        needs.add("secrets")
    if re.search(r"(?<![\w.])read\s*\(", text) or any(
        "namespaceFiles" in task for _, task in iter_tasks(raw)
    ):
        needs.add("files")
    return needs


def _short(name: Any) -> str | None:
    entry = REGISTRY.resolve(name)
    return entry.short if entry else None


def test_subflows_of_the_valid_corpus_exist_in_it() -> None:
    flows = {(_validated(p).raw["namespace"], _validated(p).raw["id"]) for p in VALID}
    missing = []
    for path in VALID:
        for where, task in iter_tasks(_validated(path).raw):
            target = (task.get("namespace"), task.get("flowId"))
            if _short(task.get("type")) == "core.flow.Subflow" and target not in flows:
                missing.append(f"{path.name} {where}: {target[0]}.{target[1]}")
    assert not missing, "subflows calling flows that are not in the corpus:\n" + "\n".join(missing)


# -- coverage of the flow language by the valid corpus --------------------------------------


@dataclass
class Coverage:
    """What the valid corpus uses: (model, property alias) pairs and type names."""

    properties: set[tuple[type[BaseModel], str]] = field(default_factory=set)
    type_names: set[str] = field(default_factory=set)
    input_types: set[str] = field(default_factory=set)
    mappings: set[int] = field(default_factory=set)  # id() of every mapping visited

    def visit(self, annotation: Any, value: Any) -> None:
        """Walk `value` along `annotation`, recording each model's properties used."""
        annotation = _strip(annotation)
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            for member in _choose(typing.get_args(annotation), value):
                self.visit(member, value)
        elif origin is list and isinstance(value, list):
            for item in value:
                self.visit(typing.get_args(annotation)[0], item)
        elif origin is dict and isinstance(value, dict):
            for item in value.values():
                self.visit(typing.get_args(annotation)[1], item)
        elif _is_model(annotation) and isinstance(value, dict):
            self.record(annotation, value)

    def record(self, model: type[BaseModel], value: dict[str, Any]) -> None:
        self.mappings.add(id(value))
        fields = {f.alias or name: f for name, f in _fields(model).items()}
        for key, item in value.items():
            self.properties.add((model, key))
            if key in fields:
                self.visit(fields[key].annotation, item)
        kind = value.get("type")
        entry = REGISTRY.resolve(kind)
        if isinstance(kind, str) and entry is not None and entry.model is model:
            self.type_names.add(kind)  # a type, not a pluginDefaults entry naming one
        elif isinstance(kind, str) and model in INPUT_TYPES.values():
            self.input_types.add(kind)


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """A model's fields, with the annotations that name a union of types resolved.

    Models are built when first used (`defer_build`); until then a field typed with a
    union of the registered types (`list[AnyTask]`) keeps its annotation as written.
    """
    model.model_rebuild()
    return model.model_fields


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _choose(members: tuple[Any, ...], value: Any) -> list[Any]:
    """The members of a union that `value` is read as (tagged unions by their `type`)."""
    members = tuple(_flatten(members))
    if isinstance(value, list):
        return [m for m in members if typing.get_origin(m) is list]
    if not isinstance(value, dict):
        return []
    models = [m for m in members if _is_model(m)]
    if len(models) > 1:
        return [m for m in [_discriminate(value.get("type"))] if m in models]
    return models or [m for m in members if typing.get_origin(m) is dict]


def _flatten(members: tuple[Any, ...]) -> Iterator[Any]:
    """Union members without `Annotated`, nested unions (`Optional[Tagged]`) opened."""
    for member in members:
        member = _strip(member)
        if typing.get_origin(member) in (typing.Union, types.UnionType):
            yield from _flatten(typing.get_args(member))
        else:
            yield member


def _discriminate(kind: Any) -> type[BaseModel] | None:
    entry = REGISTRY.resolve(kind)
    if entry is not None:
        return entry.model
    if not isinstance(kind, str):
        return None
    return INPUT_TYPES.get(kind.upper()) or RETRY_MODELS.get(kind.lower())


def _reachable(model: type[BaseModel]) -> set[type[BaseModel]]:
    """Every model a flow can contain: `model` and those its fields name, transitively."""
    seen: set[type[BaseModel]] = set()
    todo = [model]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for f in _fields(current).values():
            todo += _models_in(f.annotation)
    return seen


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if _is_model(annotation):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


@functools.cache
def _coverage() -> Coverage:
    coverage = Coverage()
    for path in VALID:
        raw = _validated(path).raw
        coverage.record(Flow, raw)
        unvisited = [where for where, task in iter_tasks(raw) if id(task) not in coverage.mappings]
        assert not unvisited, f"{path.name}: the coverage walk missed tasks at {unvisited}"
    return coverage


def _label(model: type[BaseModel]) -> str:
    names = [e.short for kind in KINDS for e in REGISTRY.entries(kind) if e.model is model]
    names += sorted(n for n, m in INPUT_TYPES.items() if m is model)
    return f"{model.__name__} ({', '.join(names)})" if names else model.__name__


def _entries() -> list[TypeEntry]:
    return [e for kind in KINDS for e in REGISTRY.entries(kind)]


def test_the_coverage_walk_knows_every_registered_model() -> None:
    reachable = _reachable(Flow)
    required = {e.model for e in _entries()} | set(INPUT_TYPES.values())
    required |= set(RETRY_MODELS.values())
    assert required <= reachable, sorted(m.__name__ for m in required - reachable)


def test_valid_corpus_uses_every_property_of_every_model() -> None:
    used = _coverage().properties
    missing: dict[str, list[str]] = {}
    for model in sorted(_reachable(Flow), key=lambda m: m.__name__):
        for name, f in model.model_fields.items():
            alias = f.alias or name
            if (model, alias) not in used and (model, alias) not in NOT_IN_KESTRA:
                missing.setdefault(_label(model), []).append(alias)
    report = "\n".join(f"  {model}: {', '.join(names)}" for model, names in missing.items())
    assert not missing, f"properties no valid corpus flow uses:\n{report}"


def test_valid_corpus_uses_every_name_of_every_type() -> None:
    used = _coverage().type_names
    missing = [
        f"  {e.kind} {e.short}: {name}" for e in _entries() for name in e.names if name not in used
    ]
    assert not missing, "type names no valid corpus flow uses:\n" + "\n".join(missing)


def test_valid_corpus_uses_every_input_type_name() -> None:
    missing = sorted(set(INPUT_TYPES) - _coverage().input_types)
    assert not missing, f"input types no valid corpus flow uses: {', '.join(missing)}"


def _tags(path: Path) -> list[str]:
    """The inside of every `{{ }}` and `{% %}` of a file."""
    text = path.read_text(encoding="utf-8")
    return [next(part for part in m.groups() if part is not None) for m in TAGS.finditer(text)]


def test_valid_corpus_uses_the_expression_language() -> None:
    tags = [tag for path in VALID for tag in _tags(path)]
    filters = {name for tag in tags for name in FILTER_NAME.findall(tag)}
    functions = {name for tag in tags for name in FUNCTION_NAME.findall(FILTER_NAME.sub("|", tag))}
    problems = []
    if not any("??" in tag for tag in tags):
        problems.append("no '??' operator")
    if not any(re.search(r"[^?]\?[^?].*:", tag) for tag in tags):
        problems.append("no ternary 'a ? b : c'")
    if not any(tag.lstrip().startswith(("if ", "for ")) for tag in tags):
        problems.append("no '{% if %}' or '{% for %}' tag")
    problems += [f"filter '{name}' unused" for name in FILTERS if name not in filters]
    problems += [f"function '{name}' unused" for name in FUNCTIONS if name not in functions]
    assert not problems, "the valid corpus misses expression features:\n" + "\n".join(problems)
