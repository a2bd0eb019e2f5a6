"""The atomic writers: a failed write leaves the old file intact; results get ordinary file permissions."""

import os
import stat

import numpy as np
import pytest

from isletbayes.data.io import atomic_path, to_json, write_json_atomic, write_text_atomic


def test_failed_write_leaves_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    write_text_atomic(target, "old complete content")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old complete content"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_written_files_follow_the_umask_not_mkstemp_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_json_handles_numpy_and_non_finite(tmp_path):
    path = write_json_atomic(tmp_path / "x.json", {"a": np.float64(0.5), "b": np.arange(3), "c": float("nan")})
    assert '"a": 0.5' in path.read_text()
    assert to_json({"c": float("inf")}).replace(" ", "").replace("\n", "") == '{"c":null}'
