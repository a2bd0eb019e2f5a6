"""File-system faults during a run lose nothing (issue 13, items 1 and 8; the kills and interrupts are in
test_interrupts.py).

* the output folder is replaced whole: a full disk (``ENOSPC`` injected into the writer at each of its writes,
  and a real full tmpfs where this machine lets the test mount one), a read-only folder, a folder removed during
  the run: exit 2, one line naming the path, the previous results byte for byte as they were, nothing left
  beside them;
* the fit cache is optional: a cache that cannot be written (read-only, full) is skipped with one warning and
  the run finishes with the same numbers;
* two runs on the same output folder and cache serialise on the folder's lock (the second says it waits) and
  both finish with whole results.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from hardening_support import is_root, siblings, snapshot, start_cli, write_config

from isletbayes.analyses.main_job import read_index


def summaries(out: Path) -> dict:
    """What a run concluded, section by section (results.json's summaries: no times, no paths)."""
    return {name: entry.summary for name, entry in read_index(out).sections.items()}


@pytest.fixture
def previous(tmp_path, exact_config, cli):
    """An output folder written by a whole run, and its cache."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    result = cli("run", "--config", exact_config, "--out", out, "--cache-dir", cache, "--no-pdf", "--quiet")
    assert result.code == 0, result.err
    return out, cache


@contextmanager
def writes_fail(monkeypatch, inside: Path, at: int | None = None, code: int = errno.ENOSPC):
    """Every atomic write (data.io.atomic_path) to a path under ``inside`` fails with ``code`` (only the
    ``at``-th one, 1-based, when given); yields the list of paths written so far."""
    from isletbayes.data import io as io_mod

    real = io_mod.atomic_path
    seen: list[Path] = []

    @contextmanager
    def failing(path):
        path = Path(path)
        if path.absolute().is_relative_to(inside.absolute()):
            seen.append(path)
            if at is None or len(seen) == at:
                raise OSError(code, os.strerror(code), str(path))
        with real(path) as tmp:
            yield tmp

    monkeypatch.setattr(io_mod, "atomic_path", failing)
    yield seen


def test_a_full_disk_at_any_write_of_the_output_keeps_the_previous_results(previous, exact_config, cli,
                                                                          monkeypatch, seed):
    out, cache = previous
    before = snapshot(out)
    with writes_fail(monkeypatch, out.parent, at=10**9) as seen:  # count the writes of a whole run
        assert cli("run", "--config", exact_config, "--out", out, "--cache-dir", cache, "--no-pdf",
                   "--quiet").code == 0
    n_writes = len(seen)
    assert n_writes >= 3  # results.json (twice) and the report at least
    rng = np.random.default_rng(seed(13))
    for at in sorted({1, n_writes, *rng.integers(1, n_writes + 1, size=2).tolist()}):
        before = snapshot(out)
        monkeypatch.undo()
        with writes_fail(monkeypatch, out.parent, at=at):
            result = cli("run", "--config", exact_config, "--out", out, "--cache-dir", cache, "--no-pdf", "--quiet")
        monkeypatch.undo()
        assert result.code == 2, (at, result.err)
        assert len(result.lines) == 1 and result.lines[0].startswith("isletbayes: error: "), result.err
        assert "no space left on device" in result.lines[0] and str(out.parent) in result.lines[0]
        assert snapshot(out) == before, f"write {at} of {n_writes} failed and the previous results changed"
        assert siblings(out) == []


def test_a_real_full_disk_keeps_the_previous_results(tmp_path, exact_config, cli):
    """On a 1 MiB tmpfs (where this machine allows mounting one): the first run fits, the second does not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root); the injected ENOSPC test covers the logic")
    try:
        out, cache = disk / "out", tmp_path / "cache"
        first = cli("run", "--config", exact_config, "--out", out, "--cache-dir", cache, "--no-pdf", "--quiet")
        assert first.code == 0, first.err
        before = snapshot(out)
        used = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        filler = disk / "filler"
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler.write_bytes(b"\0" * max(0, free - used // 2))  # room for half a run
        second = cli("run", "--config", exact_config, "--out", out, "--cache-dir", cache, "--no-pdf", "--quiet")
        assert second.code == 2, second.err
        assert len(second.lines) == 1 and "no space left on device" in second.lines[0], second.err
        assert snapshot(out) == before
        assert siblings(out) == []
        filler.unlink()
        third = cli("run", "--config", exact_config, "--out", out, "--cache-dir", cache, "--no-pdf", "--quiet")
        assert third.code == 0, third.err
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_full_cache_disk_is_skipped_with_one_warning(tmp_path, exact_config, cli, monkeypatch):
    out, cache = tmp_path / "out", tmp_path / "cache"
    reference = cli("run", "--config", exact_config, "--out", tmp_path / "ref", "--cache-dir", tmp_path / "c0",
                    "--no-pdf", "--quiet")
    assert reference.code == 0
    with writes_fail(monkeypatch, cache):
        result = cli("run", "--config", exact_config, "--out", out, "--cache-dir", cache, "--no-pdf", "--quiet")
    assert result.code == 0, result.err
    warnings = [line for line in result.lines if "warning" in line]
    assert len(warnings) == 1 and "fit cache cannot be written" in warnings[0], result.err
    assert "Traceback" not in result.err
    assert summaries(out) == summaries(tmp_path / "ref")
    index = read_index(out)
    assert {e.cache["status"] for e in index.sections.values() if e.cache} == {"not stored"}
    assert not any(p.is_file() for p in cache.rglob("*")) if cache.exists() else True


def test_a_read_only_cache_is_skipped_and_a_read_only_output_is_refused(tmp_path, exact_config, cli,
                                                                       read_only_dir):
    ok = cli("run", "--config", exact_config, "--out", tmp_path / "out", "--cache-dir", read_only_dir / "cache",
             "--no-pdf", "--quiet")
    assert ok.code == 0, ok.err
    assert [line for line in ok.lines if "warning" in line][0].startswith("isletbayes: warning: the fit cache")
    for argv in (["run", "--config", exact_config, "--no-pdf"], ["design", "--n-max", "30"],
                 ["design", "--n-max", "30", "--simulate", "3"]):
        refused = cli(*argv, "--out", read_only_dir / "out")
        assert refused.code == 2, refused.err
        assert len(refused.lines) == 1 and "--out" in refused.lines[0] and str(read_only_dir) in refused.lines[0]
        assert "read-only" in refused.lines[0] or "permission denied" in refused.lines[0]


def test_an_existing_output_on_a_disk_turned_read_only_is_left_as_it_was(tmp_path, exact_config, cli):
    """The previous results are on a file system remounted read-only (or a folder made unwritable)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = is_root() and not subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                                               capture_output=True).returncode
    if is_root() and not mounted:
        pytest.skip("root without permission to mount: permissions would not stop it")
    out = disk / "out"
    try:
        assert cli("run", "--config", exact_config, "--out", out, "--cache-dir", tmp_path / "cache", "--no-pdf",
                   "--quiet").code == 0
        before = snapshot(out)
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        else:
            disk.chmod(0o555)
            out.chmod(0o555)
        result = cli("run", "--config", exact_config, "--out", out, "--cache-dir", tmp_path / "cache", "--no-pdf",
                     "--quiet")
        assert result.code == 2 and len(result.lines) == 1 and "--out" in result.lines[0], result.err
        assert snapshot(out) == before
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], capture_output=True)
        else:
            disk.chmod(0o755)
            out.chmod(0o755)


def test_a_folder_removed_during_the_run_is_one_line_and_the_output_is_kept(previous, exact_config, cli,
                                                                           monkeypatch):
    """Someone removes the folder the new results are being written into (and, in a second run, the cache
    entry a section is being copied from)."""
    import shutil

    from isletbayes.analyses import main_job

    out, cache = previous
    before = snapshot(out)
    real_write_index = main_job.write_index

    def write_index_after_removal(job, report=None):
        shutil.rmtree(job.out)
        return real_write_index(job, report)

    monkeypatch.setattr(main_job, "write_index", write_index_after_removal)
    result = cli("run", "--config", exact_config, "--out", out, "--cache-dir", cache, "--no-pdf", "--quiet")
    monkeypatch.undo()
    assert result.code == 2 and len(result.lines) == 1, result.err
    assert "removed during the run" in result.lines[0] and str(out.parent) in result.lines[0]
    assert snapshot(out) == before and siblings(out) == []

    real_copy = main_job._copy_entry

    def copy_after_removal(src, dest):
        shutil.rmtree(src)
        return real_copy(src, dest)

    monkeypatch.setattr(main_job, "_copy_entry", copy_after_removal)
    result = cli("run", "--config", exact_config, "--out", out, "--cache-dir", cache, "--no-pdf", "--quiet")
    monkeypatch.undo()
    assert result.code == 2 and len(result.lines) == 1, result.err
    assert "was it removed while the run was going?" in result.lines[0] and str(cache) in result.lines[0]
    assert snapshot(out) == before and siblings(out) == []


def test_the_output_folder_is_replaced_whole(previous, tmp_path, cli, exact_run):
    """A second run with other settings replaces every file of the first: no section of the old run is left."""
    out, cache = previous
    doc = json.loads(json.dumps(exact_run))
    doc["sections"]["durability"] = False
    other = write_config(tmp_path / "other.yaml", doc)
    assert (out / "durability").is_dir()
    assert cli("run", "--config", other, "--out", out, "--cache-dir", cache, "--no-pdf", "--quiet").code == 0
    assert not (out / "durability").exists()
    index = read_index(out)
    assert index.sections["durability"].status == "skipped"
    assert sorted(p.name for p in out.iterdir()) == ["design", "report.html", "results.json"]
    assert siblings(out) == []


def test_run_prints_the_paths_of_its_results_as_the_user_wrote_them(tmp_path, monkeypatch, cli, exact_run):
    """`isletbayes run --out out` prints out/report.html and out/results.json, as the README shows, though the job
    works on the folder's absolute path; an output folder outside the working folder is printed absolute."""
    config = write_config(tmp_path / "config.yaml", exact_run)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = cli("run", "--config", config, "--out", "out", "--cache-dir", "cache", "--no-pdf")
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == "out/report.html"
    assert "report: out/report.html" in result.err and "results index: out/results.json" in result.err
    elsewhere = tmp_path / "elsewhere"
    result = cli("run", "--config", config, "--out", elsewhere, "--cache-dir", "cache", "--no-pdf", "--quiet")
    assert result.code == 0 and result.out.splitlines()[-1] == str(elsewhere / "report.html")


def test_an_output_folder_given_as_a_link_keeps_the_link(previous, exact_config, cli, tmp_path):
    out, cache = previous
    link = tmp_path / "link"
    link.symlink_to(out, target_is_directory=True)
    assert cli("run", "--config", exact_config, "--out", link, "--cache-dir", cache, "--no-pdf", "--quiet").code == 0
    assert link.is_symlink() and link.resolve() == out.resolve()
    assert (out / "results.json").is_file() and siblings(out) == []


def test_two_runs_on_one_folder_serialise_on_its_lock(tmp_path, exact_config):
    """The test holds the folder's lock: a run started meanwhile says it waits, and goes on when it is freed;
    two runs started together both finish with whole results."""
    from isletbayes.analyses.outputs import OutputLock

    out, cache = tmp_path / "out", tmp_path / "cache"
    common = ["run", "--config", exact_config, "--out", out, "--cache-dir", cache, "--no-pdf", "--quiet"]
    with OutputLock(out.absolute()):
        waiting = start_cli(*common)
        first_line = waiting.stderr.readline()  # blocks until the run reaches the lock and says so
        assert waiting.poll() is None, (first_line, waiting.communicate())
        assert not out.exists()
    stdout, stderr = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, stderr
    assert [line for line in (first_line + stderr).splitlines() if line.strip()] == [
        f"isletbayes: warning: waiting for another isletbayes run (pid {os.getpid()}) writing {out} to finish"]
    first = summaries(out)

    both = [start_cli(*common), start_cli(*common)]
    for proc in both:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    assert summaries(out) == first
    assert siblings(out) == []
