"""Crash-safe writing: every output file is written to a temporary file beside it, then renamed over it.

``os.replace`` is atomic on POSIX, so a reader (or an interrupted run) sees either the old complete file or
the new complete file, never a half-written one.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``path``, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates the file 0600; give the result the permissions an ordinary open() would (0666 & ~umask)
    os.chmod(tmp_path, 0o666 & ~_current_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def _numpy():
    """numpy if it is loaded, else None: an object can be a numpy value only once numpy is imported, so a
    command that never imported it (``data check --json``) need not import it to write JSON."""
    return sys.modules.get("numpy")


def _json_default(obj: Any):
    np = _numpy()
    if np is not None and isinstance(obj, np.generic):
        return obj.item()
    if np is not None and isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    """JSON text with numpy scalars/arrays converted; NaN/inf are written as null."""
    np = _numpy()

    def clean(o):
        if isinstance(o, float):
            return float(o) if math.isfinite(o) else None
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if np is not None:
            if isinstance(o, np.ndarray):
                return clean(o.tolist())
            if isinstance(o, np.floating):
                return clean(float(o))
        return o

    return json.dumps(clean(obj), indent=2, default=_json_default, sort_keys=False)


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, to_json(obj) + "\n")


def write_datatree_atomic(path: str | Path, tree) -> Path:
    """Write an xarray DataTree (an ArviZ result) to netCDF atomically."""
    with atomic_path(path) as tmp:
        tree.to_netcdf(tmp, engine="h5netcdf")
    return Path(path)
