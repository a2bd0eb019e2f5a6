"""Provenance recorded with every result: seeds, settings, package versions, git commit, input hashes, time."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("isletbayes", "pymc", "pytensor", "arviz", "arviz-base", "arviz-stats", "arviz-plots", "nutpie",
            "numpy", "scipy", "pandas", "xarray", "matplotlib", "dask", "distributed")


def package_versions() -> dict[str, str]:
    """The versions of Python and of :data:`PACKAGES` this process runs (a new dict on each call)."""
    return dict(_installed_versions())


@lru_cache(maxsize=None)
def _installed_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process (about 30 ms from the installed metadata): the code a process has loaded does not
    change while it runs, and every cache key and provenance record asks for them."""
    out = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, "not installed"))
    return tuple(out)


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit of the working tree this code runs from ('+dirty' if it has changes), or 'unknown'."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def sha256_of(obj: Any) -> str:
    """Hash of bytes, a file path's contents, or any JSON-serialisable object (canonical key order)."""
    import json

    if isinstance(obj, (bytes, bytearray)):
        data = bytes(obj)
    elif isinstance(obj, Path):
        data = obj.read_bytes()
    else:
        data = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(data).hexdigest()


def provenance(**settings: Any) -> dict[str, Any]:
    """A provenance block: the caller's settings (seed, sampler settings, ...) plus environment facts."""
    return {
        "settings": settings,
        "package_versions": package_versions(),
        "git_commit": git_commit(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
    }
