"""The README is a contract: every example in it is run here.

* a ```console block holds commands (``$ ...``) each followed by its output. The command is run from a scratch
  folder holding the repository's ``data/`` (so the README's relative paths work) with ``.venv/bin`` first on the
  path; the exit status must be 2 when the printed output starts with ``isletbayes: error:``, else 0; the output
  must match line by line, where a line ``...`` stands for any number of lines and ``…`` inside a line for any text
  (the README elides what changes from run to run: timings, dates);
* a ```bash block holds commands only: each is run and must exit 0;
* a ```python block is executed (in the same scratch folder), and must not raise;
* a ```yaml block whose first line is ``# NAME.yaml`` is written to that file first, for the commands after it.

A block preceded by ``<!-- readme-test: slow -->`` is run only with ``pytest -m slow`` (it takes minutes: the
main job, or a full MCMC fit); ``<!-- readme-test: skip REASON -->`` says why a block cannot be run here (the two
commands that set up and run this very suite).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"(?:<!--\s*readme-test:\s*(?P<mark>[a-z]+)(?P<reason>[^>]*)-->\s*\n)?```(?P<lang>[a-z]+)\n"
                   r"(?P<body>.*?)\n```", re.S)


@dataclass
class Block:
    index: int
    lang: str
    body: str
    mark: str | None
    reason: str
    line: int

    @property
    def id(self) -> str:
        return f"{self.lang}@line{self.line}"


def blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    out = []
    for i, m in enumerate(FENCE.finditer(text)):
        line = text[: m.start("body")].count("\n")
        out.append(Block(i, m.group("lang"), m.group("body"), m.group("mark"), (m.group("reason") or "").strip(),
                         line))
    return out


BLOCKS = [b for b in blocks() if b.lang in ("console", "bash", "python", "yaml")]


def _param(block: Block):
    marks = []
    if block.mark == "slow":
        marks.append(pytest.mark.slow)
    elif block.mark == "skip":
        marks.append(pytest.mark.skip(reason=block.reason or "not runnable here"))
    return pytest.param(block, id=block.id, marks=marks)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    (folder / "data").symlink_to(ROOT / "data")
    for block in BLOCKS:  # configuration files the examples use
        first = block.body.splitlines()[0] if block.body else ""
        if block.lang == "yaml" and re.fullmatch(r"#\s*[\w.-]+\.yaml", first.strip()):
            (folder / first.strip().lstrip("#").strip()).write_text(block.body + "\n")
    return folder


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "160"
    env.pop("ISLETBAYES_CACHE_DIR", None)
    return env


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Line-by-line match where '...' spans any lines and '…' any text within a line."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(_matches(rest, actual[i:]) for i in range(len(actual) + 1))
    if not actual:
        return False
    pattern = "^" + ".*".join(re.escape(part) for part in head.rstrip().split("…")) + "$"
    return re.match(pattern, actual[0].rstrip()) is not None and _matches(rest, actual[1:])


def _commands(body: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of a console block."""
    out: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
    return out


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=1800)


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS if b.lang == "console"])
def test_console_example(block: Block, scratch: Path):
    commands = _commands(block.body)
    assert commands, "a console block without a $ command"
    for command, expected in commands:
        proc = _run(command, scratch)
        printed = (proc.stdout + proc.stderr).rstrip("\n").splitlines()
        want_error = bool(expected) and expected[0].startswith("isletbayes: error:")
        assert proc.returncode == (2 if want_error else 0), (command, proc.returncode, proc.stderr[-2000:])
        assert _matches([line.rstrip() for line in expected], [line.rstrip() for line in printed]), (
            f"README line {block.line}: `{command}` printed\n" + "\n".join(printed))


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS if b.lang == "bash"])
def test_bash_example(block: Block, scratch: Path):
    for line in block.body.splitlines():
        command = line.split("#")[0].strip()
        if not command:
            continue
        proc = _run(command, ROOT if command.startswith("make ") else scratch)
        assert proc.returncode == 0, (command, proc.stderr[-2000:])


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS if b.lang == "python"])
def test_python_example(block: Block, scratch: Path, monkeypatch):
    monkeypatch.chdir(scratch)
    exec(compile(block.body, f"README.md (line {block.line})", "exec"), {"__name__": "readme_example"})


def test_the_readme_has_examples_of_every_kind():
    kinds = {b.lang for b in BLOCKS}
    assert {"console", "bash", "python", "yaml"} <= kinds
