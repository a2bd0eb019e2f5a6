"""Rendered report figures kept on disk, so that rebuilding a report whose numbers did not change draws nothing.

Every figure of the report is one function of :mod:`isletbayes.reports.figures` applied to numbers, given as a
``functools.partial``. Its **key** is the SHA-256 of the function's name, its arguments in order (the order of a
dict's entries is the order in which they are drawn), the source of the figures module and of every isletbayes
module it imports (:func:`isletbayes.analyses.cache.code_fingerprint`) and the package versions (matplotlib draws
it). The same key gives the same PNG, so a kept one is used as it is.

An entry is ``<root>/<key>.txt``: the SHA-256 of the data URI on the first line, the URI
(``data:image/png;base64,...``) on the second, written to a temporary file and renamed into place. An entry that
is missing, unreadable or does not match its checksum is drawn again and rewritten; a folder that cannot be written
is skipped, and the figure is drawn each time. Deleting the folder is always safe.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from isletbayes.analyses.cache import code_fingerprint
from isletbayes.analyses.provenance import package_versions
from isletbayes.data.io import write_text_atomic

URI_PREFIX = "data:image/png;base64,"


def _feed(digest, obj: Any) -> None:
    """Add ``obj`` to ``digest``, with its type and, for containers, its order and length."""
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        digest.update(f"ndarray {array.dtype.str} {array.shape}\n".encode())
        digest.update(array.tobytes() if array.dtype != object else repr(array.tolist()).encode())
    elif isinstance(obj, dict):
        digest.update(f"dict {len(obj)}\n".encode())
        for key, value in obj.items():
            _feed(digest, key)
            _feed(digest, value)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__} {len(obj)}\n".encode())
        for value in obj:
            _feed(digest, value)
    elif obj is None or isinstance(obj, (bool, int, float, str, np.generic)):
        digest.update(f"{type(obj).__name__} {obj!r}\n".encode())
    elif callable(getattr(obj, "to_dict", None)):  # a mixture: its weights and parameters
        digest.update(f"{type(obj).__name__}\n".encode())
        _feed(digest, obj.to_dict())
    else:
        raise TypeError(f"cannot key a figure on a {type(obj).__name__}; pass numbers, arrays, dicts and mixtures")


def figure_key(draw: partial) -> str:
    """The key of the figure ``draw()`` makes (see the module docstring)."""
    digest = hashlib.sha256()
    digest.update(f"{draw.func.__module__}.{draw.func.__qualname__}\n".encode())
    _feed(digest, list(draw.args))
    _feed(digest, dict(sorted(draw.keywords.items())))  # keywords are named: their order draws nothing
    _feed(digest, code_fingerprint("isletbayes.reports.figures"))
    _feed(digest, package_versions())
    return digest.hexdigest()


@dataclass
class FigureCache:
    """Rendered figures under ``root`` (None: draw every figure, keep nothing)."""

    root: Path | None

    def uri(self, draw: partial) -> str:
        """The figure ``draw()`` makes, as a PNG data URI: kept, or drawn now and kept."""
        from isletbayes.reports.figures import to_data_uri

        if self.root is None:
            return to_data_uri(draw())
        path = Path(self.root) / f"{figure_key(draw)}.txt"
        kept = self._read(path)
        if kept is not None:
            return kept
        uri = to_data_uri(draw())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(path, f"{hashlib.sha256(uri.encode()).hexdigest()}\n{uri}")
        except OSError:  # an optimisation, never a reason to fail: this figure is drawn again next time
            pass
        return uri

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            checksum, uri = path.read_text(encoding="ascii").split("\n", 1)
        except (OSError, ValueError):  # absent, unreadable, not ASCII, or no checksum line
            return None
        if not uri.startswith(URI_PREFIX) or hashlib.sha256(uri.encode()).hexdigest() != checksum:
            return None
        return uri
