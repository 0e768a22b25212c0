"""Every console example in README.md and docs/*.md is run, and prints what it shows.

The conventions of the markdown (tests/unit/test_docs_examples.py checks docs/flows.md's
YAML; this module checks the transcripts):

- A ```console block is a transcript. A line starting with ``$ `` is a command (a line
  ending in ``\\`` continues on the next one); the lines after it, up to the next
  command, are what it prints: standard output and standard error together, as a
  terminal shows them. A ``# comment`` after a command is the shell's.
- In the expected lines, ``…`` stands for any text within a line (an id, a duration,
  the end of a long message), and a line that is only ``…`` for any number of lines,
  none included. The block's folder, wherever it is, prints as ``<tmp>``. Trailing
  spaces and blank lines at the end do not count; the exit status is not checked.
- Each block runs in a fresh empty folder, with HOME and the XDG folders inside it and
  no ``HEADWATER_*`` variable. Before it runs, every ```yaml block above it in the same
  document whose first line names a file (``# flows/tutorial/hello.yaml`` or
  ``# flows/tutorial/hello.yaml: a comment``) is written there, at that path (a later
  block of the same path replaces an earlier one).
- Only self-contained commands run: ``headwater`` with one of RUNNABLE_SUBCOMMANDS (or
  ``--help``), and the small shell tools of SHELL_TOOLS (git, sed, cat, ...); ``cd DIR``
  and ``export NAME=VALUE`` apply to the commands after them.
- A transcript that cannot run here (it needs a running daemon, a network, docker, or a
  benchmark of minutes) says so on the line right above its fence::

      <!-- console: not run (needs a running daemon) -->

  A ```console block that is neither runnable nor marked fails, so an example cannot
  drift silently. A ```sh block holds commands to copy, without output and without
  ``$ `` prompts: a block with prompts must be a ```console block.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!--\s*console:\s*not run\s*\((?P<reason>[^)]*)\)\s*-->")
NAMED_FILE = re.compile(r"#\s*(?P<path>[\w./-]+\.ya?ml)(?::.*)?")
ELLIPSIS = "…"

RUNNABLE_SUBCOMMANDS = frozenset({"validate", "schema", "run", "init", "--help", "-h"})
SHELL_TOOLS = frozenset({"git", "sed", "cat", "ls", "echo", "printf", "mkdir", "cp", "touch"})
COMMAND_TIMEOUT = 60  # seconds; a runnable example takes a few


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence
    lang: str
    text: str
    marked: str | None  # the reason given by a '<!-- console: not run (…) -->' mark
    files: tuple[tuple[str, str], ...]  # (path, text) of the named yaml blocks above it

    @property
    def label(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _mark_above(doc: str, start: int) -> str | None:
    above = doc[:start].rstrip("\n").rsplit("\n", 1)[-1]
    found = NOT_RUN.fullmatch(above.strip())
    return found.group("reason").strip() if found else None


def _blocks(path: Path) -> list[Block]:
    doc = path.read_text(encoding="utf-8")
    files: dict[str, str] = {}
    blocks = []
    for m in FENCE.finditer(doc):
        lang, text = m.group(1), m.group(2)
        line = doc.count("\n", 0, m.start()) + 1
        blocks.append(
            Block(path, line, lang, text, _mark_above(doc, m.start()), tuple(files.items()))
        )
        named = NAMED_FILE.fullmatch(text.split("\n", 1)[0].strip())
        if lang == "yaml" and named:
            files[named.group("path")] = text
    return blocks


BLOCKS = [b for doc in DOCS for b in _blocks(doc)]
CONSOLE = [b for b in BLOCKS if b.lang == "console"]
RUN = [b for b in CONSOLE if b.marked is None]
MARKED = [b for b in CONSOLE if b.marked is not None]


@dataclass(frozen=True)
class Step:
    command: str
    expected: list[str]


def _steps(block: Block) -> list[Step]:
    steps: list[Step] = []
    lines = block.text.splitlines()
    i = 0
    assert lines and lines[0].startswith("$ "), f"{block.label}: must start with a '$ ' command"
    while i < len(lines):
        command = lines[i][2:]
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        steps.append(Step(command.strip(), expected))
    return steps


def _argv(command: str) -> list[str]:
    return shlex.split(command, comments=True)


def _refusal(argv: list[str]) -> str | None:
    """Why a command is not run by this test; None when it is."""
    if not argv:
        return "an empty command"
    name = argv[0]
    if name in ("cd", "export") or name in SHELL_TOOLS:
        return None
    if name != "headwater":
        return f"{name!r} is not a command this test runs"
    sub = next((a for a in argv[1:] if not a.startswith("-v")), "--help")
    if sub in RUNNABLE_SUBCOMMANDS or "--help" in argv or "-h" in argv:
        return None
    return f"'headwater {sub}' needs more than a folder (a daemon, a network)"


def _pattern(expected: list[str]) -> re.Pattern[str]:
    parts = []
    for line in expected:
        if line.strip() == ELLIPSIS:
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            pieces = line.rstrip().split(ELLIPSIS)
            parts.append("[^\n]*?".join(re.escape(p) for p in pieces) + r"[ \t]*\n")
    return re.compile("".join(parts))


def _normalised(output: str, folder: Path) -> str:
    text = output.replace(str(folder.resolve()), "<tmp>").replace(str(folder), "<tmp>")
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(line + "\n" for line in lines)


def _trimmed(expected: list[str]) -> list[str]:
    lines = list(expected)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _environment(folder: Path) -> dict[str, str]:
    home = folder.parent / "home"
    bin_dir = folder.parent / "bin"
    for made in (home, bin_dir):
        made.mkdir(exist_ok=True)
    shim = bin_dir / "headwater"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m headwater.daemon.cli "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEADWATER_", "GIT_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        GIT_CONFIG_NOSYSTEM="1",
        PYTHONUNBUFFERED="1",
        COLUMNS="80",
        NO_COLOR="1",
        TERM="dumb",
    )
    return env


def _write_files(block: Block, folder: Path) -> None:
    for name, text in block.files:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def _run(command: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    return result.stdout


def _param(block: Block) -> Any:
    return pytest.param(block, id=block.label)


def test_the_docs_have_run_examples() -> None:
    assert len(RUN) >= 2, "the README's and cli.md's transcripts are no longer run"


@pytest.mark.parametrize("block", RUN, ids=[b.label for b in RUN])
def test_console_example_prints_what_it_shows(block: Block, tmp_path: Path) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    _write_files(block, folder)
    env = _environment(folder)
    cwd = folder
    for step in _steps(block):
        argv = _argv(step.command)
        refusal = _refusal(argv)
        assert refusal is None, (
            f"{block.label}: `{step.command}`: {refusal}; run only self-contained commands "
            "or put '<!-- console: not run (why) -->' on the line above the block"
        )
        if argv[0] == "cd":
            cwd = (cwd / argv[1]).resolve()
            assert not step.expected, f"{block.label}: `{step.command}` prints nothing"
            continue
        if argv[0] == "export":
            env.update(a.partition("=")[::2] for a in argv[1:] if "=" in a)
            continue
        actual = _normalised(_run(step.command, cwd, env), folder)
        expected = _trimmed(step.expected)
        assert _pattern(expected).fullmatch(actual), (
            f"{block.label}: `{step.command}` prints other lines than the docs show.\n"
            "shown:\n" + "\n".join(expected) + "\nactual:\n" + actual
        )


def test_marked_blocks_say_why() -> None:
    vague = [b.label for b in MARKED if not b.marked]
    assert not vague, "a '<!-- console: not run (why) -->' mark without a reason: " + ", ".join(
        vague
    )


def test_transcripts_are_console_blocks() -> None:
    prompts = [
        b.label
        for b in BLOCKS
        if b.lang in ("sh", "shell", "bash", "")
        and any(line.startswith("$ ") for line in b.text.splitlines())
    ]
    assert not prompts, (
        "blocks with '$ ' prompts must be ```console blocks (run, or marked as not run): "
        + ", ".join(prompts)
    )
