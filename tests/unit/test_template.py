"""The flows repository template: complete, valid, and copied without overwriting."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pathspec
import pytest
import yaml

from headwater.daemon.flow import registry as reg
from headwater.daemon.flow.repository import load_ignore, references, scan
from headwater.daemon.flow.walk import iter_tasks
from headwater.daemon.template import (
    DestinationNotEmpty,
    TemplateError,
    copy_template,
    template_files,
    template_root,
)

ROOT = Path(__file__).resolve().parents[2]

REQUIRED = [
    "README.md",
    ".gitignore",
    ".headwaterignore",
    ".pre-commit-config.yaml",
    ".gitlab-ci.yml",
    ".github/workflows/headwater.yml",
    ".vscode/settings.json",
    ".vscode/extensions.json",
    ".headwater/flow.schema.json",
    "flows/tutorial/hello.yaml",
    "flows/company/etl/orders.yaml",
    "flows/company/etl/nightly.yaml",
    "flows/company/etl/_files/clean.py",
    "flows/company/etl/_files/orders.csv",
    "flows/company/etl/_files/load.sql",
    "flows/company/ops/alert.yaml",
]


def flows() -> dict[str, dict[str, Any]]:
    """Every template flow, parsed, by `namespace.id`."""
    found: dict[str, dict[str, Any]] = {}
    for flow_file in scan(template_root()).flows:
        assert flow_file.flow is not None, flow_file.diagnostics
        found[f"{flow_file.flow.namespace}.{flow_file.flow.id}"] = flow_file.raw
    return found


def short(item: dict[str, Any], kind: reg.Kind) -> str:
    entry = reg.REGISTRY.resolve(item["type"], kind)
    assert entry is not None, item["type"]
    return entry.short


def triggers(short_type: str) -> list[dict[str, Any]]:
    return [
        trigger
        for flow in flows().values()
        for trigger in flow.get("triggers", [])
        if short(trigger, "trigger") == short_type
    ]


def test_every_template_flow_is_valid() -> None:
    tree = scan(template_root())
    assert tree.valid, "\n".join(str(d) for d in tree.all_diagnostics)
    assert len(tree.flows) >= 4


def test_the_template_root_is_the_source_folder_in_a_checkout() -> None:
    assert template_root().resolve() == (ROOT / "flows-repo-template").resolve()


def test_the_template_has_every_required_file() -> None:
    files = {path.as_posix() for path in template_files()}
    missing = [name for name in REQUIRED if name not in files]
    assert not missing, f"the template lacks {missing}"


def test_examples_live_in_several_namespaces() -> None:
    namespaces = {name.rsplit(".", 1)[0] for name in flows()}
    assert {"tutorial", "company.etl", "company.ops"} <= namespaces


def test_an_example_schedule_names_its_timezone() -> None:
    assert any(trigger.get("timezone") for trigger in triggers("core.trigger.Schedule"))


def test_an_example_webhook_takes_its_key_from_a_secret() -> None:
    keys = [trigger["key"] for trigger in triggers("core.trigger.Webhook")]
    assert keys
    assert all(re.fullmatch(r"\{\{ secret\('[A-Z_]+'\) \}\}", key) for key in keys), keys


def test_an_example_calls_another_flow_of_the_template_as_a_subflow() -> None:
    examples = flows()
    called = {
        f"{namespace}.{flow_id}"
        for flow in examples.values()
        for _, kind, namespace, flow_id in references(flow)
        if kind == "subflow"
    }
    assert called
    assert called <= set(examples)


def test_an_example_python_task_uses_namespace_files_that_exist() -> None:
    files = {path.as_posix() for path in template_files()}
    uses = [
        (name, task)
        for name, flow in flows().items()
        for _, task in iter_tasks(flow)
        if short(task, "task").startswith("scripts.python.")
        and task.get("namespaceFiles", {}).get("enabled")
    ]
    assert uses
    for name, task in uses:
        folder = "flows/" + name.rsplit(".", 1)[0].replace(".", "/") + "/_files/"
        for include in task["namespaceFiles"].get("include", []):
            assert folder + include in files, f"{name} includes {include}, not in {folder}"


def test_the_example_headwaterignore_ignores_nothing() -> None:
    root = template_root()
    text = (root / ".headwaterignore").read_text(encoding="utf-8")
    assert all(not line.strip() or line.startswith("#") for line in text.splitlines())
    spec = load_ignore(root)
    assert spec is not None
    assert not [f for f in template_files() if spec.match_file(f.as_posix())]


def test_the_template_gitignore_keeps_every_template_file() -> None:
    lines = (template_root() / ".gitignore").read_text(encoding="utf-8").splitlines()
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    assert not [f for f in template_files() if spec.match_file(f.as_posix())]
    assert spec.match_file(".env")


def test_editor_settings_and_pre_commit_hook() -> None:
    root = template_root()
    hooks = yaml.safe_load((root / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    (hook,) = [h for repo in hooks["repos"] for h in repo["hooks"]]
    assert hook["entry"] == "headwater validate"
    assert hook["pass_filenames"] is False
    assert hook["files"] == "^flows/"
    assert (root / ".vscode/extensions.json").read_text().count("redhat.vscode-yaml") == 1


def test_copy_into_a_missing_folder_copies_every_file_with_dotfiles(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "new-flows"
    written = copy_template(dest)
    assert written == [dest / rel for rel in template_files()]
    for rel in template_files():
        assert (dest / rel).read_bytes() == (template_root() / rel).read_bytes()
    assert (dest / ".github/workflows/headwater.yml").is_file()
    assert scan(dest).valid


def test_copy_into_an_empty_folder(tmp_path: Path) -> None:
    written = copy_template(tmp_path)
    assert (tmp_path / "flows/tutorial/hello.yaml") in written


@pytest.mark.parametrize("leftover", ["notes.txt", ".git/HEAD", ".hidden"])
def test_copy_refuses_a_folder_that_is_not_empty(tmp_path: Path, leftover: str) -> None:
    (tmp_path / leftover).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / leftover).write_text("mine\n")
    with pytest.raises(DestinationNotEmpty, match="already exists and is not empty"):
        copy_template(tmp_path)
    files = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [leftover]
    assert (tmp_path / leftover).read_text() == "mine\n"


def test_copy_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "flows.txt"
    target.write_text("mine\n")
    with pytest.raises(DestinationNotEmpty, match="is not a folder"):
        copy_template(target)
    assert target.read_text() == "mine\n"


@pytest.mark.parametrize("exists", [False, True])
def test_a_copy_that_fails_half_way_leaves_the_folder_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exists: bool
) -> None:
    dest = tmp_path / "flows-repo"
    if exists:
        dest.mkdir()
    copied: list[str] = []
    real_copyfile = shutil.copyfile

    def copyfile_until_the_disk_is_full(src: Path, dst: Path) -> Any:
        if len(copied) == 3:
            raise OSError(28, "No space left on device")
        copied.append(str(dst))
        return real_copyfile(src, dst)

    monkeypatch.setattr(shutil, "copyfile", copyfile_until_the_disk_is_full)
    with pytest.raises(TemplateError, match="No space left on device"):
        copy_template(dest)
    assert dest.exists() is exists
    assert not exists or list(dest.iterdir()) == []
