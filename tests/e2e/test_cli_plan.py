"""`headwater plan` in a clone, as a reviewer (or CI on a pull request) runs it.

A base commit is pushed to `origin/main`; the tests change flows in the working tree or
in commits and read what the plan says: each flow added, updated (the summary: tasks,
triggers with their next fire times, inputs; then the unified diff) or deleted, in
text, markdown and JSON, and every error when the head would not deploy.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from gitrepos import WorkingClone, git, git_env, make_remote

ETL = """id: etl
namespace: team
inputs:
  - id: day
    type: STRING
tasks:
  - id: extract
    type: core.log.Log
    message: extracting
  - id: load
    type: core.log.Log
    message: loading
triggers:
  - id: nightly
    type: core.trigger.Schedule
    cron: "0 2 * * *"
    timezone: Europe/Paris
"""
ETL_CHANGED = """id: etl
namespace: team
inputs:
  - id: day
    type: DATE
  - id: region
    type: STRING
    defaults: eu
tasks:
  - id: load
    type: core.log.Log
    message: loading faster
  - id: notify
    type: core.debug.Return
    format: done
triggers:
  - id: nightly
    type: core.trigger.Schedule
    cron: "30 3 * * *"
    timezone: Europe/Paris
"""
ETL_DIFF = """--- a/flows/team/etl.yaml
+++ b/flows/team/etl.yaml
@@ -2,16 +2,19 @@
 namespace: team
 inputs:
   - id: day
+    type: DATE
+  - id: region
     type: STRING
+    defaults: eu
 tasks:
-  - id: extract
-    type: core.log.Log
-    message: extracting
   - id: load
     type: core.log.Log
-    message: loading
+    message: loading faster
+  - id: notify
+    type: core.debug.Return
+    format: done
 triggers:
   - id: nightly
     type: core.trigger.Schedule
-    cron: "0 2 * * *"
+    cron: "30 3 * * *"
     timezone: Europe/Paris"""
ETL_SUMMARY = [
    "task added: notify (core.debug.Return)",
    "task removed: extract (core.log.Log)",
    "task changed: load (core.log.Log)",
    "trigger changed: nightly (schedule '30 3 * * *' Europe/Paris)",
    "next fire times of nightly: {fires}",
    "input added: region (STRING)",
    "input changed: day (DATE)",
]


def simple(namespace: str, flow_id: str, extra: str = "") -> str:
    return (
        f"id: {flow_id}\nnamespace: {namespace}\ntasks:\n"
        f"  - id: say\n    type: core.log.Log\n    message: hi\n{extra}"
    )


def headwater(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "headwater.daemon.cli", "plan", *args]
    return subprocess.run(
        command, cwd=cwd, env=git_env(), capture_output=True, text=True, timeout=60
    )


def fire_times() -> set[str]:
    """The next three 03:30 in Paris, as the plan prints them (twice, around a minute edge)."""
    found = set()
    for _ in range(2):
        it = croniter("30 3 * * *", datetime.now(ZoneInfo("Europe/Paris")))
        found.add(", ".join(it.get_next(datetime).isoformat() for _ in range(3)))
    return found


def normalized(text: str) -> str:
    """The plan with commit ids and fire times replaced by placeholders."""
    text = re.sub(r"plan [0-9a-f]{12} -> [0-9a-f]{12}", "plan BASE -> HEAD", text)
    for fires in fire_times():
        text = text.replace(fires, "{fires}")
    return text


@pytest.fixture
def clone(tmp_path: Path) -> WorkingClone:
    """A clone whose origin/main has team.etl, team.old and team.caller (no references)."""
    remote = make_remote(tmp_path / "remote.git")
    work = WorkingClone.create(tmp_path / "work", remote)
    work.write_many(
        {
            "flows/team/etl.yaml": ETL,
            "flows/team/old.yaml": simple("team", "old"),
            "flows/team/caller.yaml": simple("team", "caller"),
            "README.md": "flows\n",
        }
    )
    work.commit("base")
    work.push()
    work.git("fetch", "--quiet", "origin")
    return work


def change(work: WorkingClone) -> None:
    """Update etl, add fresh, delete old: in the working tree, not committed."""
    work.write("flows/team/etl.yaml", ETL_CHANGED)
    work.write("flows/team/fresh.yaml", simple("team", "fresh"))
    work.remove("flows/team/old.yaml")


def test_text_plan_of_the_working_tree(clone: WorkingClone) -> None:
    change(clone)
    result = headwater(cwd=clone.path)
    assert result.returncode == 0, result.stderr
    summary = "".join(f"  {'  ' if 'fire' in line else ''}{line}\n" for line in ETL_SUMMARY)
    assert normalized(result.stdout) == (
        "plan BASE -> HEAD: 1 added, 1 updated, 1 deleted\n"
        "\n"
        "update  team.etl (flows/team/etl.yaml)\n"
        f"{summary}"
        f"{ETL_DIFF}\n"
        "\n"
        "add     team.fresh (flows/team/fresh.yaml)\n"
        "  task added: say (core.log.Log)\n"
        "\n"
        "delete  team.old (flows/team/old.yaml)\n"
    )
    base = clone.git("rev-parse", "origin/main")
    assert result.stdout.startswith(f"plan {base[:12]} -> ")
    assert clone.git("status", "--porcelain") != ""  # the working tree is left as it was
    assert clone.git("rev-parse", "HEAD") == base  # and so are the branch and the index


def test_a_plan_from_a_subfolder_is_the_plan_of_the_whole_clone(clone: WorkingClone) -> None:
    change(clone)
    from_root = headwater(cwd=clone.path)
    from_inside = headwater(cwd=clone.path / "flows" / "team")
    assert from_inside.returncode == 0, from_inside.stderr
    assert "1 added, 1 updated, 1 deleted" in from_inside.stdout
    assert normalized(from_inside.stdout) == normalized(from_root.stdout)


def test_markdown_and_json_plans_of_committed_refs(clone: WorkingClone) -> None:
    base = clone.head()
    clone.git("checkout", "--quiet", "-b", "feature")
    change(clone)
    head = clone.commit("etl reworked, fresh, old gone")
    clone.git("tag", "reviewed")
    clone.write("flows/team/later.yaml", simple("team", "later"))  # not in --head

    markdown = headwater(
        "--base", "origin/main", "--head", "reviewed", "--format", "markdown", cwd=clone.path
    )
    assert markdown.returncode == 0, markdown.stderr
    lines = normalized(markdown.stdout).splitlines()
    assert lines[:3] == ["### Headwater plan: ✅ deploys", "", "1 added, 1 updated, 1 deleted"]
    etl = lines.index("#### update `team.etl` (flows/team/etl.yaml)")
    assert lines[etl + 1 : etl + 8] == [f"- {line}" for line in ETL_SUMMARY]
    assert lines[etl + 8 : etl + 12] == ["", "<details><summary>diff</summary>", "", "```diff"]
    assert "\n".join(lines[etl + 12 : etl + 12 + len(ETL_DIFF.splitlines())]) == ETL_DIFF
    assert "#### add `team.fresh` (flows/team/fresh.yaml)" in lines
    assert "#### delete `team.old` (flows/team/old.yaml)" in lines
    assert "later" not in markdown.stdout

    plan = json.loads(
        headwater("--base", base[:8], "--head", head, "--format", "json", cwd=clone.path).stdout
    )
    assert (plan["base"], plan["head"], plan["valid"], plan["errors"]) == (base, head, True, [])
    by_id = {f["id"]: f for f in plan["flows"]}
    assert [(f["id"], f["action"], f["path"]) for f in plan["flows"]] == [
        ("etl", "update", "flows/team/etl.yaml"),
        ("fresh", "add", "flows/team/fresh.yaml"),
        ("old", "delete", "flows/team/old.yaml"),
    ]
    assert [normalized(s) for s in by_id["etl"]["summary"]] == ETL_SUMMARY
    assert by_id["etl"]["diff"] == ETL_DIFF + "\n"
    assert (by_id["old"]["summary"], by_id["old"]["diff"]) == ([], "")


def test_the_default_base_is_the_merge_base_with_origin(clone: WorkingClone) -> None:
    clone.git("checkout", "--quiet", "-b", "feature")
    clone.write("flows/team/fresh.yaml", simple("team", "fresh"))
    clone.commit("fresh")
    clone.git("checkout", "--quiet", "main")  # main moves on: not part of the feature
    clone.write("flows/team/other.yaml", simple("team", "other"))
    clone.commit("other")
    clone.push()
    clone.git("fetch", "--quiet", "origin")
    clone.git("checkout", "--quiet", "feature")
    plan = json.loads(headwater("--format", "json", cwd=clone.path).stdout)
    assert [(f["id"], f["action"]) for f in plan["flows"]] == [("fresh", "add")]


def test_an_invalid_head_exits_1_with_every_error(clone: WorkingClone) -> None:
    clone.write("flows/team/etl.yaml", ETL.replace("core.log.Log", "core.log.Lg", 1))
    clone.write("flows/team/fresh.yaml", simple("team", "wrong"))
    clone.write(
        "flows/team/caller.yaml",
        simple(
            "team",
            "caller",
            "  - id: call\n    type: core.flow.Subflow\n    namespace: team\n    flowId: gone\n",
        ),
    )
    clone.remove("flows/team/old.yaml")
    errors = [
        "flows/team/caller.yaml:7:5: error: tasks[1]: subflow names flow team.gone, "
        "which does not exist in the flows folder",
        "flows/team/etl.yaml:8:11: error: tasks[0]: unknown task type 'core.log.Lg'; "
        "did you mean 'core.log.Log'?",
        "flows/team/fresh.yaml:1:5: error: id: 'wrong' does not match the file name "
        "fresh.yaml; change it to id: fresh or rename the file to wrong.yaml",
    ]
    text = headwater(cwd=clone.path)
    assert text.returncode == 1
    assert text.stdout.endswith(
        "\n3 error(s): this commit would not deploy\n" + "\n".join(errors) + "\n"
    )

    markdown = headwater("--format", "markdown", cwd=clone.path)
    assert markdown.returncode == 1
    assert markdown.stdout.startswith("### Headwater plan: ❌ would not deploy: 3 error(s)\n")
    assert "#### Errors\n\n```\n" + "\n".join(errors) + "\n```\n" in markdown.stdout

    report = headwater("--format", "json", cwd=clone.path)
    assert report.returncode == 1
    plan = json.loads(report.stdout)
    assert plan["valid"] is False
    assert [
        f"{e['path']}:{e['line']}:{e['column']}: {e['severity']}: {e['message']}"
        for e in plan["errors"]
    ] == errors


def test_deleting_a_flow_another_one_calls_is_an_error(clone: WorkingClone) -> None:
    call = "  - id: call\n    type: core.flow.Subflow\n    namespace: team\n    flowId: old\n"
    clone.write("flows/team/caller.yaml", simple("team", "caller", call))
    clone.commit("caller calls old")
    clone.push()
    clone.remove("flows/team/old.yaml")
    result = headwater(cwd=clone.path)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == (
        "flows/team/caller.yaml:1:1: error: subflow names flow team.old, which this commit "
        "deletes; change this flow in the same commit"
    )


def test_an_unknown_ref_is_a_usage_error(clone: WorkingClone) -> None:
    result = headwater("--base", "no-such-branch", cwd=clone.path)
    assert result.returncode == 2
    assert "'no-such-branch' does not name a commit" in result.stderr


def test_outside_a_git_repository_plan_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-repo"
    folder.mkdir()
    result = headwater(cwd=folder)
    assert result.returncode == 2
    assert f"{folder} is not in a git repository" in result.stderr
    assert "git add" not in result.stderr


def test_a_clone_whose_head_names_a_missing_branch_is_refused(clone: WorkingClone) -> None:
    """The remote's HEAD names `master`, which it does not have: the clone checks out
    nothing, and a plan of its empty tree would say "nothing" and pass."""
    remote = clone.path.parent / "remote.git"
    git("symbolic-ref", "HEAD", "refs/heads/master", cwd=remote)
    copy = clone.path.parent / "copy"
    git("clone", "--quiet", str(remote), str(copy))
    result = headwater(cwd=copy)
    assert result.returncode == 2
    assert "HEAD points at branch 'master', which does not exist" in result.stderr
    assert "plan" not in result.stdout


def test_a_repository_without_a_commit_is_refused(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    git("init", "--quiet", "--initial-branch=main", str(fresh))
    (fresh / "flows").mkdir()
    result = headwater(cwd=fresh)
    assert result.returncode == 2
    assert "has no commit yet (HEAD is branch 'main'): commit your flows first" in result.stderr
