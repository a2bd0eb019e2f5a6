"""The built wheel installs with its bundled data and works outside the repository.

A copy of the source tree (without build outputs or virtual environments) is built with ``python -m build``
(an sdist, and the wheel built from that sdist: what a user or an index gets), the wheel is installed into a
fresh virtual environment that has no pip and no isletbayes of its own, and the commands run from a folder outside
the repository. The fresh environment borrows only the *dependencies* from this project's environment (a
``.pth`` line naming its site-packages; ``.pth`` files in that folder, such as the editable install's finder,
are not processed, so the source checkout is never importable). Every test asserts that isletbayes was imported
from the install location.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: top-level folders that become isletbayes packages (pyproject.toml, [tool.setuptools.package-dir])
PACKAGE_DIRS = {"api": "isletbayes", "data": "isletbayes/data", "models": "isletbayes/models",
                "analyses": "isletbayes/analyses", "reports": "isletbayes/reports"}
#: files in those folders that are not package data: resumable checkpoints and partial benchmark logs
NOT_PACKAGE_DATA = ("analyses/results/*.jsonl", "analyses/results/*.txt")
IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                "out", ".isletbayes-cache", "*.pyc")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, console script, working folder) of a fresh environment with only the built wheel installed."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=IGNORE)
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(base / "dist"),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels = sorted((base / "dist").glob("isletbayes-*.whl"))
    assert len(wheels) == 1, wheels

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "--quiet", str(wheels[0])], check=True, timeout=300)
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "isletbayes_test_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    work = base / "elsewhere"
    work.mkdir()
    return python, venv / "bin" / "isletbayes", work, wheels[0], purelib


def _run(args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def test_the_wheel_holds_every_data_file_of_the_packages(installed):
    *_, wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", *PACKAGE_DIRS], cwd=ROOT, capture_output=True, text=True)
    files = tracked.stdout.split() if tracked.returncode == 0 else [
        str(p.relative_to(ROOT)) for d in PACKAGE_DIRS for p in (ROOT / d).rglob("*") if p.is_file()]
    data_files = [f for f in files if not f.endswith((".py", ".pyc")) and "__pycache__" not in f
                  and not any(Path(f).match(pattern) for pattern in NOT_PACKAGE_DATA)]
    assert any(f.startswith("data/published/") for f in data_files)
    missing = []
    for f in data_files:
        top, _, rest = f.partition("/")
        if f"{PACKAGE_DIRS[top]}/{rest}" not in names:
            missing.append(f)
    assert not missing, f"not in the wheel: {missing}"


def test_the_installed_package_imports_from_the_install_location(installed):
    python, _, work, _, purelib = installed
    code = ("import json, isletbayes as ib, isletbayes.analyses.config as config\n"
            "print(json.dumps({'file': ib.__file__, 'version': ib.__version__,"
            " 'config': str(config.default_config_path()), 'count': ib.published_count('insulin_independence')}))")
    out = json.loads(_run([python, "-c", code], work).stdout)
    assert Path(out["file"]).resolve().is_relative_to(purelib.resolve())
    assert not Path(out["file"]).resolve().is_relative_to(ROOT)
    assert Path(out["config"]).resolve().is_relative_to(purelib.resolve()) and Path(out["config"]).is_file()
    assert out["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert out["count"] == [10, 12]


def test_the_commands_run_outside_the_repository(installed):
    python, script, work, _, purelib = installed
    summary = _run([script, "data", "summary"], work).stdout
    assert f"Bundled published data in {purelib / 'isletbayes' / 'data' / 'published'}" in summary
    assert "all files valid" in summary
    assert "Usage" in _run([python, "-m", "isletbayes.analyses.cli", "--help"], work).stdout
    example = purelib / "isletbayes" / "data" / "examples" / "participant_example.csv"
    assert "valid participant file" in _run([script, "data", "check", example], work).stdout

    # one real analysis: the exact phase 3 design (with its MAP prior fit), written to a folder here
    _run([script, "design", "--estimand", "insulin_independence_day365", "--n-min", "10", "--n-max", "40",
          "--n-step", "5", "--out", "design-out"], work, timeout=600)
    result = json.loads((work / "design-out" / "design.json").read_text())
    table = (work / "design-out" / "design_table.csv").read_text().splitlines()
    assert len(table) == 1 + len(range(10, 41, 5))
    assert result["settings"]["estimand"]["preset"] == "insulin_independence_day365"


def test_the_package_imports_no_test_only_dependency():
    """websocket-client, pypdfium2, Pillow, pytest, build and filelock are dev extras: no module of the package
    imports them."""
    import ast

    dev_modules = {"websocket", "pypdfium2", "PIL", "pytest", "xdist", "build", "filelock"}
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("websocket-client") for d in dev) and any(d.startswith("pypdfium2") for d in dev)
    test_only = {"websocket-client", "pypdfium2", "pytest", "build", "filelock"}
    assert not any(d.split(">")[0].split("<")[0].split("[")[0] in test_only for d in runtime)
    found = []
    for folder in PACKAGE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                         else [])
                found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in dev_modules]
    assert not found
