"""`headwater plan`: what deploying one commit over another would change.

The reviewer of a pull request reads, for each flow: added, updated (a summary first —
tasks added, removed and changed; triggers changed, with the next three fire times of
each changed schedule; inputs changed — then the unified diff of the YAML), or
deleted; then every validation error. The same reconciliation as a real deploy
decides it, so a plan that passes deploys.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from croniter import croniter

from headwater.daemon import defaults
from headwater.daemon.errors import Diagnostic, HeadwaterError
from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.repository import place_of
from headwater.daemon.flow.triggers.schedule import NICKNAMES
from headwater.daemon.flow.walk import iter_tasks
from headwater.daemon.git import Mirror
from headwater.daemon.reconcile import Reconciliation, flow_references, plan_commit
from headwater.daemon.secretrefs import as_diagnostic, missing_secret_diagnostics, secret_calls
from headwater.daemon.store.store import Row

FIRE_TIMES = 3  # next fire times shown per changed schedule


class TreeState:
    """The flows of a commit, playing the part of "what is deployed" for a plan."""

    def __init__(self, mirror: Mirror, base: str | None, head: str, flows_dir: str) -> None:
        self.mirror = mirror
        self.head = head
        self.prefix = flows_dir.rstrip("/") + "/"
        self.flows_dir = flows_dir
        self._flows = self._list(base) if base else []
        self._by_key = {(f["namespace"], f["flow_id"]): f for f in self._flows}

    def _list(self, commit: str) -> list[Row]:
        rows = []
        for entry in self.mirror.tree(commit, self.prefix):
            place = place_of(
                PurePosixPath(entry.path).relative_to(self.flows_dir).parts, self.flows_dir
            )
            if place.kind == "flow" and not place.problems:
                rows.append(
                    {
                        "namespace": place.namespace,
                        "flow_id": place.flow_id,
                        "path": entry.path,
                        "blob": entry.blob,
                        "deleted": False,
                    }
                )
        return rows

    def deployed_flows(self) -> list[Row]:
        return list(self._flows)

    def flow(self, namespace: str, flow_id: str) -> Row | None:
        return self._by_key.get((namespace, flow_id))

    def referencing(self, targets: Iterable[tuple[str, str]]) -> list[Row]:
        wanted = set(targets)
        if not wanted:
            return []
        entries = [
            e
            for e in self.mirror.tree(self.head, self.prefix)
            if e.path.endswith(defaults.FLOW_FILE_SUFFIXES)
        ]
        blobs = self.mirror.read_blobs(e.blob for e in entries)
        needles = [fid.encode() for _, fid in wanted]
        found: list[Row] = []
        for entry in entries:
            data = blobs[entry.blob]
            if not any(n in data for n in needles):
                continue  # cheap filter before parsing
            try:
                raw = yaml.safe_load(data)
            except yaml.YAMLError:
                continue
            if not isinstance(raw, dict):
                continue
            for ns, fid, kind in flow_references(raw):
                if (ns, fid) in wanted:
                    found.append(
                        {
                            "namespace": raw.get("namespace"),
                            "flow_id": raw.get("id"),
                            "ref_namespace": ns,
                            "ref_flow_id": fid,
                            "kind": kind,
                        }
                    )
        return found


@dataclass
class FlowPlan:
    namespace: str
    flow_id: str
    path: str
    action: str
    summary: list[str] = field(default_factory=list)
    diff: str = ""


@dataclass
class Plan:
    base: str | None
    head: str
    flows: list[FlowPlan]
    errors: list[Diagnostic]
    warnings: list[Diagnostic] = field(default_factory=list)
    """Secrets the flows name that the daemon does not have (only with `plan --server`)."""

    @property
    def valid(self) -> bool:
        return not self.errors


Unset = Callable[[set[str]], set[str]]
"""Secret names -> those a daemon does not have."""


def make_plan(
    mirror: Mirror,
    base: str | None,
    head: str,
    flows_dir: str = defaults.DEFAULT_FLOWS_DIR,
    unset: Unset | None = None,
    deployed_warnings: Sequence[Row] = (),
) -> Plan:
    """The plan; given `unset` (a daemon's answer), with warnings of the secrets the changed
    flows name that it does not have, and of `deployed_warnings` (the daemon's own) for the
    flows the plan leaves alone."""
    state = TreeState(mirror, base, head, flows_dir)
    result: Reconciliation = plan_commit(state, mirror, head, base, flows_dir, allow_empty=True)
    before = {(f["namespace"], f["flow_id"]): f for f in state.deployed_flows()}
    old_sources = mirror.read_blobs(
        f["blob"]
        for f in before.values()
        if any((c.namespace, c.flow_id) == (f["namespace"], f["flow_id"]) for c in result.changes)
    )
    flows = []
    for change in sorted(result.changes, key=lambda c: (c.namespace, c.flow_id)):
        old_row = before.get((change.namespace, change.flow_id))
        old = old_sources.get(old_row["blob"], b"").decode("utf-8", "replace") if old_row else ""
        new = change.source or ""
        plan = FlowPlan(
            change.namespace,
            change.flow_id,
            change.path or (old_row or {}).get("path", ""),
            change.action,
        )
        if change.action == "update":
            plan.summary = summarize(old, new)
            plan.diff = "".join(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"a/{(old_row or {}).get('path', change.path)}",
                    tofile=f"b/{change.path}",
                )
            )
        elif change.action == "add":
            plan.summary = summarize("", new)
        flows.append(plan)
    warnings = _secret_warnings(result, unset, deployed_warnings) if unset else []
    return Plan(base, head, flows, result.errors, warnings)


def _secret_warnings(
    result: Reconciliation, unset: Unset, deployed_warnings: Sequence[Row]
) -> list[Diagnostic]:
    changed = [c.parsed for c in result.changes if c.action != "delete" and c.parsed is not None]
    names = {name for parsed in changed for _, name in secret_calls(parsed.raw)}
    missing = unset(names) if names else set()
    found = [
        warning
        for parsed in changed
        for _, warning in missing_secret_diagnostics(parsed, lambda name: name not in missing)
    ]
    touched = {(c.namespace, c.flow_id) for c in result.changes}
    found += [
        as_diagnostic(w)
        for w in deployed_warnings
        if (w.get("namespace"), w.get("flowId")) not in touched
    ]
    return sorted(set(found), key=Diagnostic.sort_key)


# -- what changed inside a flow -------------------------------------------------------------


def _load(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) if text else {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _by_id(items: Any) -> dict[str, Any]:
    return {i["id"]: i for i in items or [] if isinstance(i, dict) and isinstance(i.get("id"), str)}


def summarize(old_text: str, new_text: str) -> list[str]:
    """Lines a reviewer reads first: tasks, triggers (with fire times), inputs."""
    old, new = _load(old_text), _load(new_text)
    lines: list[str] = []
    old_tasks = {t["id"]: t for _, t in iter_tasks(old) if isinstance(t.get("id"), str)}
    new_tasks = {t["id"]: t for _, t in iter_tasks(new) if isinstance(t.get("id"), str)}
    lines += _compare("task", old_tasks, new_tasks, _task_label)
    old_triggers, new_triggers = _by_id(old.get("triggers")), _by_id(new.get("triggers"))
    lines += _compare("trigger", old_triggers, new_triggers, _trigger_label)
    for trigger_id, trigger in new_triggers.items():
        if trigger != old_triggers.get(trigger_id) and _is_schedule(trigger):
            lines.append(
                f"  next fire times of {trigger_id}: " + ", ".join(next_fire_times(trigger))
            )
    lines += _compare("input", _by_id(old.get("inputs")), _by_id(new.get("inputs")), _input_label)
    return lines


def _compare(kind: str, old: dict[str, Any], new: dict[str, Any], label: Any) -> list[str]:
    lines = [f"{kind} added: {label(k, new[k])}" for k in new if k not in old]
    lines += [f"{kind} removed: {label(k, old[k])}" for k in old if k not in new]
    lines += [
        f"{kind} changed: {label(k, new[k])}"
        for k in new
        if k in old and _own(old[k]) != _own(new[k])
    ]
    return lines


def _own(task: dict[str, Any]) -> dict[str, Any]:
    """A task's own properties, without the tasks nested in it (reported on their own)."""
    return {
        k: v
        for k, v in task.items()
        if k not in ("tasks", "then", "else", "cases", "defaults", "errors")
    }


def _short(type_name: Any) -> str:
    entry = reg.REGISTRY.resolve(type_name)
    return entry.short if entry else str(type_name)


def _task_label(task_id: str, task: dict[str, Any]) -> str:
    return f"{task_id} ({_short(task.get('type'))})"


def _trigger_label(trigger_id: str, trigger: dict[str, Any]) -> str:
    if _is_schedule(trigger):
        zone = trigger.get("timezone", "UTC")
        return f"{trigger_id} (schedule '{trigger.get('cron')}' {zone})"
    return f"{trigger_id} ({_short(trigger.get('type'))})"


def _input_label(input_id: str, item: dict[str, Any]) -> str:
    return f"{input_id} ({item.get('type')})"


def _is_schedule(trigger: dict[str, Any]) -> bool:
    entry = reg.REGISTRY.resolve(trigger.get("type"), "trigger")
    return entry is not None and entry.short == "core.trigger.Schedule"


def next_fire_times(
    trigger: dict[str, Any], now: datetime | None = None, count: int = FIRE_TIMES
) -> list[str]:
    cron = str(trigger.get("cron", ""))
    expression = NICKNAMES.get(cron.strip().lower(), cron)
    fields = expression.split()
    if trigger.get("withSeconds") and len(fields) == 6:
        fields = [*fields[1:], fields[0]]
    try:
        zone = ZoneInfo(str(trigger.get("timezone", "UTC")))
        start = (now or datetime.now(UTC)).astimezone(zone)
        it = croniter(" ".join(fields), start)
        return [it.get_next(datetime).isoformat() for _ in range(count)]
    except Exception:  # an invalid schedule is reported as an error elsewhere
        return ["(invalid schedule)"]


# -- output ---------------------------------------------------------------------------------


def render_text(plan: Plan) -> str:
    out = [f"plan {(plan.base or 'nothing')[:12]} -> {plan.head[:12]}: " + _counts(plan)]
    for flow in plan.flows:
        out.append(f"\n{flow.action:<7} {flow.namespace}.{flow.flow_id} ({flow.path})")
        out += [f"  {line}" for line in flow.summary]
        if flow.diff:
            out.append(flow.diff.rstrip("\n"))
    if plan.errors:
        out.append(f"\n{len(plan.errors)} error(s): this commit would not deploy")
        out += [str(d) for d in plan.errors]
    if plan.warnings:
        out.append(f"\n{len(plan.warnings)} warning(s): secrets the daemon does not have")
        out += [str(d) for d in plan.warnings]
    return "\n".join(out) + "\n"


def render_markdown(plan: Plan) -> str:
    status = "✅ deploys" if plan.valid else f"❌ would not deploy: {len(plan.errors)} error(s)"
    out = [f"### Headwater plan: {status}", "", _counts(plan), ""]
    if plan.errors:
        out += ["#### Errors", "", "```", *[str(d) for d in plan.errors], "```", ""]
    if plan.warnings:
        out += ["#### Warnings", "", "```", *[str(d) for d in plan.warnings], "```", ""]
    for flow in plan.flows:
        out.append(f"#### {flow.action} `{flow.namespace}.{flow.flow_id}` ({flow.path})")
        out += [f"- {line.strip()}" for line in flow.summary]
        if flow.diff:
            out += [
                "",
                "<details><summary>diff</summary>",
                "",
                "```diff",
                flow.diff.rstrip("\n"),
                "```",
                "",
                "</details>",
            ]
        out.append("")
    return "\n".join(out)


def render_json(plan: Plan) -> str:
    return json.dumps(
        {
            "base": plan.base,
            "head": plan.head,
            "valid": plan.valid,
            "flows": [
                {
                    "namespace": f.namespace,
                    "id": f.flow_id,
                    "path": f.path,
                    "action": f.action,
                    "summary": [s.strip() for s in f.summary],
                    "diff": f.diff,
                }
                for f in plan.flows
            ],
            "errors": [d.to_json() for d in plan.errors],
            "warnings": [d.to_json() for d in plan.warnings],
        },
        indent=2,
    )


def _counts(plan: Plan) -> str:
    count = {a: sum(1 for f in plan.flows if f.action == a) for a in ("add", "update", "delete")}
    return f"{count['add']} added, {count['update']} updated, {count['delete']} deleted"


# -- commits of a local repository -----------------------------------------------------------


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
    )
    if result.returncode != 0:
        raise HeadwaterError(f"git {' '.join(args[:2])}: {result.stderr.strip()}")
    return result.stdout.strip()


def work_tree_root(path: Path) -> Path:
    """The top folder of the clone `path` is in, so `plan` works from any subfolder;
    `path` itself when it is not in a work tree (a bare repository)."""
    top = _try_git(path, "rev-parse", "--show-toplevel")
    return Path(top) if top else path


def check_repository(path: Path) -> None:
    """Refuse a folder that is not in a git repository, with a message that says so."""
    if not _try_git(path, "rev-parse", "--git-dir"):
        raise HeadwaterError(
            f"{path} is not in a git repository: run `headwater plan` in a clone of your "
            "flows repository, or give --repo"
        )


def check_head(repo: Path) -> None:
    """Refuse a HEAD that names no commit: a branch that does not exist (a clone whose
    remote HEAD is missing) or a repository with no commit yet. Planning from it would
    compare an empty tree with nothing and find "nothing" to deploy."""
    if _try_git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"):
        return
    ref = _try_git(repo, "symbolic-ref", "--quiet", "HEAD") or "HEAD"
    branch = ref.removeprefix("refs/heads/")
    if not _try_git(repo, "rev-list", "--max-count=1", "--all"):
        raise HeadwaterError(
            f"{repo} has no commit yet (HEAD is branch {branch!r}): commit your flows first"
        )
    raise HeadwaterError(
        f"HEAD points at branch {branch!r}, which does not exist in {repo}: "
        "check out a branch that does (`git switch main`), or give --head and --base"
    )


def working_tree_commit(repo: Path) -> str:
    """A commit of the working tree as it is (untracked files too, .gitignore respected).

    Made with a temporary index, so the user's index and branches are not touched.
    """
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        head = _try_git(repo, "rev-parse", "--verify", "HEAD^{commit}")
        if head:
            _git(repo, "read-tree", head, env=env)
        _git(repo, "add", "-A", ".", env=env)
        tree = _git(repo, "write-tree", env=env)
    who = {
        "GIT_AUTHOR_NAME": "headwater plan",
        "GIT_AUTHOR_EMAIL": "plan@headwater.local",
        "GIT_COMMITTER_NAME": "headwater plan",
        "GIT_COMMITTER_EMAIL": "plan@headwater.local",
    }
    parents = ["-p", head] if head else []
    return _git(repo, "commit-tree", tree, *parents, "-m", "working tree", env=who)


def _try_git(repo: Path, *args: str) -> str | None:
    try:
        return _git(repo, *args) or None
    except HeadwaterError:
        return None


def default_base(repo: Path, branch: str) -> str | None:
    """The merge base of HEAD with the tracked branch (origin's if there is one)."""
    for ref in (f"origin/{branch}", branch):
        if _try_git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}"):
            return _try_git(repo, "merge-base", "HEAD", ref)
    return None
