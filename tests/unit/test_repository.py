"""The flows repository contract, checked on folders made on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from headwater.daemon import defaults
from headwater.daemon.flow.repository import scan


def flow(namespace: str, flow_id: str, *tasks: str) -> str:
    body = "".join(tasks) or "  - id: hello\n    type: core.log.Log\n    message: hi\n"
    return f"id: {flow_id}\nnamespace: {namespace}\ntasks:\n{body}"


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def errors(root: Path) -> list[str]:
    return [str(d) for d in scan(root).all_diagnostics]


def test_valid_repository(tmp_path: Path) -> None:
    write(tmp_path, "flows/company/team/etl.yaml", flow("company.team", "etl"))
    write(tmp_path, "flows/company/load.yml", flow("company", "load"))
    write(tmp_path, "flows/company/team/_files/clean.py", "print('clean')\n")
    write(tmp_path, "flows/company/team/README.md", "notes beside flows are ignored\n")
    write(tmp_path, "elsewhere/ignored.yaml", "not: [a flow\n")
    tree = scan(tmp_path)
    assert tree.valid, tree.all_diagnostics
    assert sorted((f.flow.namespace, f.flow.id) for f in tree.flows if f.flow) == [
        ("company", "load"),
        ("company.team", "etl"),
    ]
    assert tree.namespace_files == {"company.team": ["clean.py"]}


def test_namespace_must_match_folder(tmp_path: Path) -> None:
    write(tmp_path, "flows/company/team/etl.yaml", flow("company.other", "etl"))
    assert errors(tmp_path) == [
        "flows/company/team/etl.yaml:2:12: error: namespace: 'company.other' does not match "
        "the folder flows/company/team/, which is namespace 'company.team'; change it to "
        "namespace: company.team or move the file"
    ]


def test_id_must_match_file_name(tmp_path: Path) -> None:
    write(tmp_path, "flows/company/etl.yaml", flow("company", "load"))
    assert errors(tmp_path) == [
        "flows/company/etl.yaml:1:5: error: id: 'load' does not match the file name etl.yaml; "
        "change it to id: etl or rename the file to load.yaml"
    ]


def test_two_files_with_one_id(tmp_path: Path) -> None:
    write(tmp_path, "flows/company/etl.yaml", flow("company", "etl"))
    write(tmp_path, "flows/company/etl.yml", flow("company", "etl"))
    assert errors(tmp_path) == [
        "flows/company/etl.yml:1:1: error: flow company.etl is defined twice: "
        "flows/company/etl.yaml and flows/company/etl.yml; keep one of them"
    ]


@pytest.mark.parametrize("folder", ["Company", "team.a", "_private", "a b"])
def test_folder_names_are_namespace_segments(tmp_path: Path, folder: str) -> None:
    write(tmp_path, f"flows/{folder}/etl.yaml", flow("x", "etl"))
    assert errors(tmp_path) == [
        f"flows/{folder}/etl.yaml:1:1: error: folder '{folder}' is not a valid namespace segment: "
        "use lower-case letters, digits, _ and - (it must match ^[a-z0-9][a-z0-9_-]*$; "
        "nesting makes the dots)"
    ]


def test_flow_outside_a_namespace_folder(tmp_path: Path) -> None:
    write(tmp_path, "flows/etl.yaml", flow("x", "etl"))
    assert errors(tmp_path) == [
        "flows/etl.yaml:1:1: error: a flow file must be in a namespace folder, "
        "e.g. flows/company/team/etl.yaml"
    ]


def test_symlinks_are_errors_and_never_followed(tmp_path: Path) -> None:
    secret = write(tmp_path, "outside/secret.yaml", flow("company", "secret"))
    write(tmp_path, "flows/company/etl.yaml", flow("company", "etl"))
    os.symlink(secret, tmp_path / "flows/company/secret.yaml")
    os.symlink(tmp_path / "outside", tmp_path / "flows/company/linked")
    tree = scan(tmp_path)
    assert [str(d) for d in tree.all_diagnostics] == [
        f"flows/company/{name}:1:1: error: symbolic links are not allowed in the flows folder "
        "(Headwater never follows them); replace it with the file itself"
        for name in ("linked", "secret.yaml")
    ]
    assert [f.path for f in tree.flows] == ["flows/company/etl.yaml"]


def test_oversized_flow_file(tmp_path: Path) -> None:
    text = flow("company", "big") + "description: " + "x" * defaults.MAX_FLOW_FILE_BYTES + "\n"
    write(tmp_path, "flows/company/big.yaml", text)
    size = len(text.encode())
    assert errors(tmp_path) == [
        f"flows/company/big.yaml:1:1: error: flow file is {size} bytes; the limit is "
        "1048576 bytes (1 MiB)"
    ]


def test_oversized_namespace_file(tmp_path: Path) -> None:
    write(tmp_path, "flows/company/etl.yaml", flow("company", "etl"))
    big = tmp_path / "flows/company/_files/data.bin"
    big.parent.mkdir(parents=True)
    with big.open("wb") as out:
        out.truncate(defaults.MAX_NAMESPACE_FILE_BYTES + 1)
    assert errors(tmp_path) == [
        "flows/company/_files/data.bin:1:1: error: namespace file is 10485761 bytes; "
        "the limit is 10485760 bytes (10 MiB)"
    ]


def test_files_folder_needs_a_namespace(tmp_path: Path) -> None:
    write(tmp_path, "flows/_files/x.txt", "x")
    assert errors(tmp_path) == [
        "flows/_files/x.txt:1:1: error: _files/ must be inside a namespace folder "
        "(flows/<namespace>/_files/)"
    ]


def test_yaml_files_under_files_are_namespace_files_not_flows(tmp_path: Path) -> None:
    write(tmp_path, "flows/company/etl.yaml", flow("company", "etl"))
    write(tmp_path, "flows/company/_files/conf/settings.yaml", "not: a flow\n")
    tree = scan(tmp_path)
    assert tree.valid
    assert tree.namespace_files == {"company": ["conf/settings.yaml"]}


def test_headwaterignore(tmp_path: Path) -> None:
    write(tmp_path, ".headwaterignore", "flows/drafts/\n*.wip.yaml\n")
    write(tmp_path, "flows/drafts/broken.yaml", "tasks: [")
    write(tmp_path, "flows/company/x.wip.yaml", "tasks: [")
    write(tmp_path, "flows/company/etl.yaml", flow("company", "etl"))
    tree = scan(tmp_path)
    assert tree.valid, tree.all_diagnostics
    assert [f.path for f in tree.flows] == ["flows/company/etl.yaml"]


def test_submodules_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "flows/company/etl.yaml", flow("company", "etl"))
    write(tmp_path, "flows/vendor/.git", "gitdir: ../../.git/modules/vendor\n")
    write(tmp_path, "flows/vendor/thing.yaml", "not: [valid\n")
    assert scan(tmp_path).valid


SUBFLOW = "  - id: call\n    type: core.flow.Subflow\n    namespace: {ns}\n    flowId: {fid}\n"


def test_subflow_reference_to_missing_flow(tmp_path: Path) -> None:
    write(tmp_path, "flows/a/parent.yaml", flow("a", "parent", SUBFLOW.format(ns="a", fid="gone")))
    write(tmp_path, "flows/a/child.yaml", flow("a", "child"))
    write(tmp_path, "flows/a/ok.yaml", flow("a", "ok", SUBFLOW.format(ns="a", fid="child")))
    assert errors(tmp_path) == [
        "flows/a/parent.yaml:4:5: error: tasks[0]: subflow names flow a.gone, "
        "which does not exist in the flows folder"
    ]


def test_flow_trigger_reference_to_missing_flow(tmp_path: Path) -> None:
    text = flow("a", "after") + (
        "triggers:\n"
        "  - id: upstream\n"
        "    type: core.trigger.Flow\n"
        "    conditions:\n"
        "      - type: core.condition.ExecutionFlow\n"
        "        namespace: a\n"
        "        flowId: missing\n"
        "    preconditions:\n"
        "      flows:\n"
        "        - namespace: a\n"
        "          flowId: before\n"
    )
    write(tmp_path, "flows/a/after.yaml", text)
    write(tmp_path, "flows/a/before.yaml", flow("a", "before"))
    assert errors(tmp_path) == [
        "flows/a/after.yaml:11:9: error: triggers[0].conditions[0]: flow trigger names flow "
        "a.missing, which does not exist in the flows folder"
    ]


def file_default(namespace: str, flow_id: str, default: str) -> str:
    return flow(namespace, flow_id) + (
        f"inputs:\n  - id: day\n    type: DATE\n  - id: prices\n    type: FILE\n"
        f"    defaults: {default}\n"
    )


def test_a_file_default_naming_a_namespace_file(tmp_path: Path) -> None:
    write(tmp_path, "flows/shop/_files/samples/prices.csv", "sku,price\n")
    write(
        tmp_path, "flows/shop/ok.yaml", file_default("shop", "ok", "nsfile:///samples/prices.csv")
    )
    assert scan(tmp_path).valid
    write(
        tmp_path,
        "flows/shop/typo.yaml",
        file_default("shop", "typo", "nsfile:///sample/prices.csv"),
    )
    write(
        tmp_path,
        "flows/other/far.yaml",
        file_default("other", "far", "nsfile:///samples/prices.csv"),
    )
    assert errors(tmp_path) == [
        "flows/other/far.yaml:12:15: error: inputs[1].defaults: FILE input 'prices' defaults to "
        "namespace file samples/prices.csv, which does not exist "
        "(there is no flows/other/_files/samples/prices.csv)",
        "flows/shop/typo.yaml:12:15: error: inputs[1].defaults: FILE input 'prices' defaults to "
        "namespace file sample/prices.csv, which does not exist "
        "(there is no flows/shop/_files/sample/prices.csv)",
    ]


def test_every_error_of_every_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "flows/a/one.yaml", "id: one\nnamespace: a\ntasks: []\n")
    write(
        tmp_path, "flows/a/two.yaml", "id: two\nnamespace: b\ntasks:\n  - id: x\n    type: nope\n"
    )
    assert errors(tmp_path) == [
        "flows/a/one.yaml:3:8: error: tasks: must not be empty",
        "flows/a/two.yaml:2:12: error: namespace: 'b' does not match the folder flows/a/, "
        "which is namespace 'a'; change it to namespace: a or move the file",
        "flows/a/two.yaml:5:11: error: tasks[0]: unknown task type 'nope'",
    ]


def test_non_utf8_flow(tmp_path: Path) -> None:
    path = tmp_path / "flows/a/bin.yaml"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"id: bin\n\xff\xfe\n")
    assert errors(tmp_path) == [
        "flows/a/bin.yaml:1:1: error: flow file is not UTF-8 text: invalid start byte at byte 8"
    ]
