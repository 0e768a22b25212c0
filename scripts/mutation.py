"""Mutation testing of the modules that carry Headwater's guarantees (issue 18).

Run through `scripts/mutation`, which keeps mutmut in its own venv (build/mutation/venv).
mutmut names a mutant after the module its file imports as, and finds that name from
the file's path; here `daemon/` installs as `headwater.daemon`, so each module is laid
out in build/mutation/<name>/ as installed (headwater/daemon, headwater/web, ...) with
the tests, and mutmut runs there on that one module. For each mutant it runs only the
tests, of the module's selection below, that called the mutated function.

The report gives, per module, the killed (a test failed), timed-out (the tests did not
finish: a hang is caught too) and surviving mutants, the kill ratio, and each survivor
with its file:line and diff. Survivors named in docs/testing.md (equivalent mutants:
nothing observable changes) are shown as justified and left out of the adjusted ratio.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build" / "mutation"
JUSTIFIED_IN = REPO / "docs" / "testing.md"
# Each code folder and the package it installs as (setup.py).
PACKAGES = {
    "daemon": "daemon",
    "runners": "runners",
    "web": "web",
    "flows-repo-template": "template",
}
# The PostgreSQL twins of the tests marked `postgres` skip (SQLite runs the same code):
# they are pointed at a port nothing listens on, and CI=true would make them fail.
NO_POSTGRES = "postgresql+psycopg://headwater@127.0.0.1:1/none"
OWN_ENV = ("CI", "HEADWATER_TEST_DATABASE", "HEADWATER_TEST_POSTGRES")
# What the tests read besides the package: test modules read docs and the template.
STAGED = ("tests", "docs", "flows-repo-template")
SKIPPED_FILES = ("__pycache__", ".pyc", ".meta")
DETECTED = ("killed", "timeout")  # mutmut statuses that mean the tests noticed the mutant
TIMEOUT_MULTIPLIER = 8  # a mutant's tests may take this many times their clean run
# The tiers whose tests a module's selection is drawn from: no service but git and SQLite.
TIERS = ["tests/unit", "tests/integration"]

# The modules, smallest first, each with the tests that exercise it: the test files whose
# name holds one of these (pytest -k), so a new file test_auth_*.py joins the auth
# selection without changing it (a changed selection makes mutmut start again from zero).
ENGINE_TESTS = [
    "test_engine_",
    "test_script_tasks",
    "test_manual_runs",
    "test_flow_trigger",
    "test_control_api",
    "test_store_writes",
    "test_task_impls",
]
SYNC_TESTS = [
    "test_sync",
    "test_nsfile_defaults",
    "test_flow_trigger",
    "test_repository",
    "test_secret_warnings",
]
MODULES: dict[str, list[str]] = {
    "web/auth.py": ["test_auth", "test_control_api"],
    "daemon/sync.py": SYNC_TESTS,
    "daemon/reconcile.py": SYNC_TESTS,
    "daemon/triggers/scheduler.py": [
        "test_scheduler",
        "test_flow_trigger",
        "test_webhook_trigger",
        "test_file_triggers",
    ],
    "daemon/engine/planner.py": ENGINE_TESTS,
    "daemon/engine/worker.py": ENGINE_TESTS,
    "daemon/engine/executor.py": ENGINE_TESTS,
    "daemon/store/store.py": [
        "test_store",
        "test_shared_database",
        "test_daemon_database",
        "test_scheduler",
        "test_engine_failures",
        "test_engine_inputs",
    ],
}


@dataclass
class Mutant:
    name: str
    status: str
    module: str
    line: int = 0
    diff: str = ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help="e.g. web/auth.py")
    parser.add_argument(
        "--retest",
        action="store_true",
        help="test again the mutants that survived or met no test (after adding tests)",
    )
    parser.add_argument("--report", action="store_true", help="only print the last results")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results")
    parser.add_argument("--children", type=int, default=1, help="mutants tested at once")
    args = parser.parse_args()
    unknown = [module for module in args.modules if module not in MODULES]
    if unknown:
        parser.error(f"not a module under mutation: {', '.join(unknown)}")
    modules = args.modules or list(MODULES)
    justified = justified_mutants()
    results: dict[str, list[Mutant]] = {}
    for module in modules:
        stage = BUILD / module.removesuffix(".py").replace("/", "_")
        if not args.report:
            if args.fresh:
                shutil.rmtree(stage, ignore_errors=True)
            lay_out(stage, module)
            again = retest_names(stage, module) if args.retest else []
            if args.retest and not again:
                print(f"== {module}: nothing to test again")
            else:
                run_mutmut(stage, args.children, again)
        results[module] = read_results(stage, module)
    print_report(results, justified)
    return 0


def lay_out(stage: Path, module: str) -> None:
    """The installed layout of the working tree, with the tests and mutmut's settings;
    mutmut's own copy (stage/mutants) gets every file but the module under mutation."""
    mutmuts_own = stage / "mutants" / "headwater" / module
    for folder, package in PACKAGES.items():
        for root in (stage, stage / "mutants"):
            sync_tree(REPO / folder, root / "headwater" / package, skip={mutmuts_own})
    for folder in STAGED:
        sync_tree(REPO / folder, stage / folder)
    settings = pytest_settings() + mutmut_settings(module)
    target = stage / "pyproject.toml"
    if not target.exists() or target.read_text() != settings:
        target.write_text(settings)


def sync_tree(source: Path, target: Path, skip: frozenset[Path] | set[Path] = frozenset()) -> None:
    """Make `target` hold what `source` holds, copying only the files that differ (with
    their times, which mutmut compares to know a changed module)."""
    wanted = set()
    for path in source.rglob("*"):
        if path.is_dir() or any(part.endswith(SKIPPED_FILES) for part in path.parts):
            continue
        relative = path.relative_to(source)
        wanted.add(relative)
        copy = target / relative
        if copy in skip:
            continue
        if not copy.exists() or not filecmp.cmp(path, copy, shallow=False):
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
    for path in list(target.rglob("*")) if target.exists() else []:
        relative = path.relative_to(target)
        stale = path.is_file() and not path.name.endswith(SKIPPED_FILES) and relative not in wanted
        if stale and path not in skip:
            path.unlink()


def pytest_settings() -> str:
    """The repository's pytest section, so the staged tests run as they do here."""
    text = (REPO / "pyproject.toml").read_text()
    match = re.search(r"^\[tool\.pytest\.ini_options\]\n(.*?)(?=^\[)", text, re.S | re.M)
    assert match, "pyproject.toml has no [tool.pytest.ini_options]"
    return match.group(0)


def mutmut_settings(module: str) -> str:
    files = " or ".join(MODULES[module])
    settings = {
        "source_paths": ["headwater/"],
        "only_mutate": [f"headwater/{module}"],
        "also_copy": [*(f"{folder}/" for folder in STAGED), "pyproject.toml"],
        "pytest_add_cli_args_test_selection": [*TIERS, "-k", files],
        "pytest_add_cli_args": ["-p", "no:cacheprovider"],
        # The engine's tests leave threads behind: fork the mutants from a clean process.
        "process_isolation": "forkserver",
        "timeout_multiplier": TIMEOUT_MULTIPLIER,
        "use_setproctitle": False,
    }
    lines = ["[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def run_mutmut(stage: Path, children: int, names: list[str]) -> None:
    print(f"== mutmut in {stage.relative_to(REPO)}", flush=True)
    env = {key: value for key, value in os.environ.items() if key not in OWN_ENV}
    env["HEADWATER_TEST_POSTGRES"] = NO_POSTGRES
    command = [str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(children)]
    subprocess.run([*command, *names], cwd=stage, env=env, check=True)


def meta_file(stage: Path, module: str) -> Path:
    return stage / "mutants" / "headwater" / f"{module}.meta"


def retest_names(stage: Path, module: str) -> list[str]:
    if not meta_file(stage, module).exists():
        return []
    mutants = read_results(stage, module, diffs=False)
    return [m.name for m in mutants if m.status in ("survived", "no tests")]


def read_results(stage: Path, module: str, diffs: bool = True) -> list[Mutant]:
    from mutmut.stats import status_by_exit_code

    meta = meta_file(stage, module)
    if not meta.exists():
        return []
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    mutants = [Mutant(name, status_by_exit_code[code], module) for name, code in codes.items()]
    shown = [m for m in mutants if diffs and m.status not in (*DETECTED, "not checked")]
    if shown:
        differ = Differ(stage, module)
        for mutant in shown:
            mutant.diff, mutant.line = differ.diff_and_line(mutant.name)
    return mutants


class Differ:
    """mutmut's diff of a mutant (as `mutmut show` prints it), and the line it changes.

    The mutated file holds every mutant of the module: it is parsed once, not per mutant.
    """

    def __init__(self, stage: Path, module: str) -> None:
        import libcst

        self.path = Path("headwater") / module
        self.mutated = libcst.parse_module((stage / "mutants" / self.path).read_text())
        self.source = (stage / self.path).read_text()

    def diff_and_line(self, name: str) -> tuple[str, int]:
        import libcst
        from mutmut.mutation.diff_apply import read_mutant_function, read_original_function
        from mutmut.utils.format_utils import orig_function_and_class_names_from_key

        functions = (
            read_original_function(self.mutated, name),
            read_mutant_function(self.mutated, name),
        )
        before, after = (libcst.Module([f]).code.strip().split("\n") for f in functions)
        where = str(self.path)
        diff = "\n".join(difflib.unified_diff(before, after, where, where, lineterm=""))
        function, cls = orig_function_and_class_names_from_key(name)
        removed = next((line[1:].strip() for line in diff.splitlines()[2:] if line[:1] == "-"), "")
        return diff, line_of(self.source, function, cls, removed)


def line_of(source: str, function: str, cls: str | None, text: str) -> int:
    """The line of `text` inside `cls.function` (or the function's first line)."""
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and cls is not None and node.name != cls:
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inside = isinstance(node, ast.ClassDef) == (cls is not None)
                if child.name == function and inside:
                    span = range(child.lineno, (child.end_lineno or child.lineno) + 1)
                    found = (n for n in span if text and lines[n - 1].strip() == text)
                    return next(found, child.lineno)
    return 0


def justified_mutants() -> set[str]:
    """The mutants docs/testing.md names as equivalent."""
    if not JUSTIFIED_IN.exists():
        return set()
    return set(re.findall(r"`(headwater\.[^`\s]+__mutmut_\d+)`", JUSTIFIED_IN.read_text()))


def print_report(results: dict[str, list[Mutant]], justified: set[str]) -> None:
    print("\n== surviving mutants")
    for module, mutants in results.items():
        for mutant in mutants:
            if mutant.status in (*DETECTED, "not checked"):
                continue
            why = "justified in docs/testing.md" if mutant.name in justified else mutant.status
            print(f"\n-- {module}:{mutant.line}  {mutant.name}  ({why})")
            print("\n".join(mutant.diff.splitlines()[2:]))
    print("\n== mutants per module (the kill ratio is of the mutants tested so far)")
    header = ("module", "mutants", "untested", "killed", "timeout", "survived", "no tests")
    print(
        "{:<30} {:>7} {:>8} {:>7} {:>7} {:>8} {:>8} {:>6} {:>10}".format(*header, "other", "killed")
    )
    totals: Counter[str] = Counter()
    for module, mutants in results.items():
        counts = Counter(m.status for m in mutants)
        totals.update(counts)
        print_row(module, counts)
    print_row("total", totals)
    tested = totals.total() - totals["not checked"]
    detected = totals["killed"] + totals["timeout"]
    equivalent = sum(
        m.name in justified and m.status not in DETECTED for ms in results.values() for m in ms
    )
    if tested:
        print(f"\nkilled {detected} of {tested} tested: {100 * detected / tested:.1f} %")
        rest = tested - equivalent
        print(
            f"without the {equivalent} justified equivalents: "
            f"{detected} of {rest}: {100 * detected / max(rest, 1):.1f} %"
        )
    if totals["not checked"]:
        print(f"{totals['not checked']} mutants not tested yet: run the script again to go on")
    missing = [module for module, mutants in results.items() if not mutants]
    if missing:
        print(f"\nnot run yet: {' '.join(missing)} (scripts/mutation {' '.join(missing)})")


def print_row(module: str, counts: Counter[str]) -> None:
    total = counts.total()
    tested = total - counts["not checked"]
    shown = ("not checked", "killed", "timeout", "survived", "no tests")
    other = total - sum(counts[status] for status in shown)
    detected = counts["killed"] + counts["timeout"]
    ratio = f"{100 * detected / tested:.1f} %" if tested else "-"
    numbers = [total, *(counts[status] for status in shown), other]
    print(
        "{:<30} {:>7} {:>8} {:>7} {:>7} {:>8} {:>8} {:>6}".format(module, *numbers), f"{ratio:>10}"
    )


if __name__ == "__main__":
    sys.exit(main())
