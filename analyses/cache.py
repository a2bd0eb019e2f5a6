"""A content-addressed cache of fitted analyses, so that rerunning an unchanged analysis costs nothing.

A fit's **key** is the SHA-256 of everything that can change its result: the analysis name, its input data,
its priors, its settings (sampler settings and seed included), the versions of the packages that compute it,
the isletbayes version and a fingerprint of the source of the analysis' module and of every isletbayes module
it imports (so a fix to a model refits what uses it, an edit elsewhere does not). Change any of them and the key
changes, so the analysis is refitted; change none and the stored result is reused.

An entry is a folder ``<cache root>/<analysis>/<key>/`` holding whatever the analysis' ``save(outdir)`` writes
(netCDF draws, JSON summaries) plus ``manifest.json``: the key, the material it was computed from, and the
SHA-256 and size of every file. Entries are written into a temporary folder beside the final one and renamed
into place (atomic on POSIX), and the manifest is written last, so a crash leaves no entry that looks whole.
On lookup an entry is trusted only if its manifest reads, names the same key, every listed file exists with
its recorded checksum, and every netCDF file opens as HDF5 of its recorded length; anything else (a half-written
entry, a flipped byte, a truncated netCDF) is reported, removed and refitted, and so is an entry whose ``load``
fails.

Where the cache lives: ``--cache-dir`` on the command line, else the environment variable
``ISLETBAYES_CACHE_DIR``, else ``.isletbayes-cache/`` beside the output folder (for the default output
``reports/out/`` that is ``reports/.isletbayes-cache/``, ignored by git); a command run without an output folder
(``isletbayes design`` keeps its design-prior panels) uses the user's cache, ``~/.cache/isletbayes/fits``.
Deleting the folder is always safe.

The cache is an optimisation, never a reason to fail: a cache folder that cannot be created or written
(permissions, a read-only or full disk) is reported once (``on_warning``, by default a :class:`CacheWarning`) and
skipped (entries are still read where they can be, nothing more is stored); an entry that cannot be read is
treated like a damaged one. Two processes storing the same entry at once both succeed: the second keeps the
first one's (whole) entry.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from isletbayes.analyses import interrupts
from isletbayes.analyses.provenance import package_versions
from isletbayes.data.io import write_json_atomic

CACHE_FORMAT = 1
MANIFEST = "manifest.json"
ENV_CACHE_DIR = "ISLETBAYES_CACHE_DIR"
CACHE_DIRNAME = ".isletbayes-cache"

T = TypeVar("T")


class CacheWarning(UserWarning):
    """The fit cache cannot be written (or read): it is skipped and the run goes on without it."""


def _warn(message: str) -> None:
    import warnings

    warnings.warn(CacheWarning(message), stacklevel=3)


def default_cache_dir(out: str | Path | None) -> Path:
    """The cache folder for an output folder: $ISLETBAYES_CACHE_DIR, else ``<out>/../.isletbayes-cache``; for a
    command without an output folder (``out`` None) the user's cache, ``$XDG_CACHE_HOME/isletbayes/fits``, else
    ``~/.cache/isletbayes/fits``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    if out is None:
        from isletbayes.models.compiled_models import user_cache_root

        return user_cache_root() / "fits"
    return Path(out).expanduser().resolve().parent / CACHE_DIRNAME


# --- keys -------------------------------------------------------------------------------------------------


def canonical(obj: Any) -> Any:
    """A JSON-ready, order-stable form of ``obj`` for hashing.

    DataFrames become their CSV text plus dtypes (so a changed value, row order or column type changes the
    key), paths become the SHA-256 of the file's bytes (so editing a data file refits), dataclasses and
    pydantic models become dicts, numpy values become Python values, floats keep full precision via repr.
    """
    import numpy as np
    import pandas as pd

    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, np.generic):
        return canonical(obj.item())
    if isinstance(obj, np.ndarray):
        return {"ndarray": str(obj.dtype), "shape": list(obj.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()}
    if isinstance(obj, pd.DataFrame):
        return {"dataframe": obj.to_csv(index=False, lineterminator="\n"),
                "dtypes": {str(k): str(v) for k, v in obj.dtypes.items()}}
    if isinstance(obj, pd.Series):
        return canonical(obj.to_frame())
    if isinstance(obj, Path):
        return {"file_sha256": hashlib.sha256(obj.read_bytes()).hexdigest()} if obj.is_file() else str(obj)
    if hasattr(obj, "model_dump"):  # pydantic
        return canonical(obj.model_dump(mode="json"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return canonical(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(canonical(v) for v in obj)
    raise TypeError(f"cannot build a cache key from a {type(obj).__name__}")


def _package_dirs() -> dict[str, Path]:
    """The folder of each of isletbayes' sub-packages (``data`` -> .../data/), found without importing them."""
    import importlib.util

    out = {}
    for name in ("data", "models", "analyses", "reports"):
        spec = importlib.util.find_spec(f"isletbayes.{name}")  # imports isletbayes (lazy, instant), not the layer
        if spec is not None and spec.submodule_search_locations:
            out[name] = Path(list(spec.submodule_search_locations)[0])
    return out


#: The top-level package (api/, ``import isletbayes as ib``): a facade whose names load on a user's first use of
#: them. No analysis goes through it, so it is not part of any analysis' code (following its loaders would put every
#: module, the report's included, into every section's key)
FACADE = "isletbayes"


@lru_cache(maxsize=None)
def _module_file(name: str) -> Path | None:
    """The source file of the isletbayes module ``name``, or None where ``name`` is no isletbayes module (an object
    inside one, say) or is the :data:`FACADE`, found on disk without importing anything."""
    parts = name.split(".")
    if parts[0] != "isletbayes" or name == FACADE:
        return None
    base = _package_dirs().get(parts[1])
    if base is None:
        return None
    path = base.joinpath(*parts[2:])
    for candidate in (path / "__init__.py", path.with_name(path.name + ".py") if len(parts) > 2 else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


#: An import statement at the start of a line: ``from isletbayes... import NAMES`` (NAMES parenthesised over
#: several lines, or continued with backslashes) or ``import NAMES``.
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(isletbayes(?:\.\w+)*)[ \t]+import[ \t]+(\([^)]*\)|(?:[^\n\\#;]|\\\n)*)"
                     r"|import[ \t]+((?:[^\n\\#;]|\\\n)*))", re.M)


def imported_names(source: str) -> tuple[str, ...]:
    """The isletbayes names ``source`` imports (modules, and ``module.name`` for every name taken from one: it may
    be a submodule), imports inside functions included, read from the text without parsing it (a full parse of a
    section's 40-odd modules costs half a second of every command; this scan, milliseconds). An import the scan
    cannot see (after ``;``, or on the line of an ``if``) would leave a module out of a fingerprint: a test
    checks, on every source file of the package, that it finds exactly what Python's own parser finds."""
    names: list[str] = []
    for match in _IMPORT.finditer(source):
        module, taken, plain = match.groups()
        if module:
            names.append(module)
            body = re.sub(r"#[^\n]*", "", taken).replace("\\\n", " ").strip().strip("()")
            names += [f"{module}.{part.split()[0]}" for part in body.split(",") if part.strip()]
        else:
            for part in plain.replace("\\\n", " ").split(","):
                words = part.split()
                if words and words[0].startswith("isletbayes."):
                    names.append(words[0])
    return tuple(names)


@lru_cache(maxsize=None)
def _imported_names(path: Path, mtime_ns: int, size: int) -> tuple[str, ...]:
    """:func:`imported_names` of a source file, read once per file version."""
    return imported_names(path.read_text(encoding="utf-8"))


def module_closure(module: str) -> list[str]:
    """``module`` and every isletbayes module it imports, directly or through others (read from the source text,
    imports inside functions included), sorted; the :data:`FACADE` is left out. Nothing is imported: the modules are
    found on disk in the package folders (so a warm run pays neither the imports nor, after the first, the parsing)."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen[name] = path
        parents = name.split(".")
        for i in range(2, len(parents)):  # a package's __init__ runs before its modules
            todo.append(".".join(parents[:i]))
        stat = path.stat()
        todo += _imported_names(path, stat.st_mtime_ns, stat.st_size)
    return sorted(seen)


@lru_cache(maxsize=None)
def code_fingerprint(module: str | None = None) -> str:
    """SHA-256 over the source of ``module`` and the isletbayes modules it imports (all of data/, models/ and
    analyses/ when None): a change to code an analysis runs refits it, a change elsewhere does not."""
    digest = hashlib.sha256()
    if module is None:
        here = Path(__file__).resolve().parent
        files = [(str(p.relative_to(here.parent)), p) for folder in (here.parent / "data", here.parent / "models",
                                                                    here) for p in sorted(folder.rglob("*.py"))]
    else:
        files = [(name, _module_file(name)) for name in module_closure(module)]
    for name, path in files:
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def key_material(analysis: str, *, data: Any, priors: Any, settings: Any, module: str | None = None
                 ) -> dict[str, Any]:
    """Everything a fit's result depends on, in canonical form (what the key hashes, kept in the manifest).

    ``module``: the analysis' module; its source and that of every isletbayes module it imports enter the key
    (all of isletbayes' analysis code when None)."""
    versions = package_versions()
    return {
        "cache_format": CACHE_FORMAT,
        "analysis": analysis,
        "isletbayes_version": versions.get("isletbayes", "unknown"),
        "code_module": module,
        "code_sha256": code_fingerprint(module),
        "package_versions": versions,
        "data": canonical(data),
        "priors": canonical(priors),
        "settings": canonical(settings),
    }


def fit_key(material: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


# --- entries ----------------------------------------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class CacheEvent:
    """What happened to one analysis in this run: 'hit', 'miss', 'refit' (entry was corrupt), 'disabled', or
    'not stored' (computed, but the cache could not be written: ``reason`` says why)."""

    analysis: str
    key: str
    status: str
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass
class FitCache:
    """The cache folder ``root``; ``enabled=False`` (``--no-cache``) computes everything and stores nothing.

    ``on_warning(message)`` is told, once, when the cache cannot be written (default: a :class:`CacheWarning`);
    from then on nothing more is stored (``writable`` is False) and the run goes on."""

    root: Path
    enabled: bool = True
    events: list[CacheEvent] = field(default_factory=list)
    on_warning: Callable[[str], None] | None = None
    writable: bool = True
    unwritable_reason: str = ""
    _last_corruption: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def entry_dir(self, analysis: str, key: str) -> Path:
        return self.root / analysis / key

    def _unwritable(self, err: OSError | str) -> None:
        """Stop storing; say so once."""
        if isinstance(err, OSError):
            words = os.strerror(err.errno) if err.errno else str(err)
            where = err.filename if err.filename is not None else self.root
            reason = f"{where}: {words}"
        else:
            reason = err
        if self.writable:
            self.writable = False
            self.unwritable_reason = reason
            (self.on_warning or _warn)(f"the fit cache cannot be written ({reason}); going on without storing "
                                       "results in it (nothing is lost but the reuse of this run's fits)")

    def prepare(self) -> bool:
        """Create the cache folder and check that it can be written (a probe folder); False (with one warning)
        where it cannot. Reading entries goes on where the folder can be read."""
        if not self.enabled:
            return False
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".probe-{uuid.uuid4().hex[:8]}"
            probe.mkdir()
            probe.rmdir()
        except OSError as err:
            self._unwritable(err)
        return self.writable

    def validate(self, entry: Path, key: str) -> str | None:
        """Why ``entry`` cannot be trusted, or None if it is whole."""
        manifest_path = entry / MANIFEST
        try:
            if not manifest_path.is_file():
                return "no manifest (half-written entry)"
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            files = manifest["files"]
            if manifest.get("key") != key:
                return "manifest names a different key"
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"unreadable manifest ({err})"
        try:
            for rel, meta in files.items():
                path = entry / rel
                if not path.is_file():
                    return f"missing file {rel}"
                if path.stat().st_size != meta.get("bytes") or _file_sha256(path) != meta.get("sha256"):
                    return f"checksum mismatch in {rel}"
                if path.suffix == ".nc":
                    reason = _netcdf_unreadable(path)
                    if reason:
                        return f"unreadable netCDF {rel} ({reason})"
        except (OSError, AttributeError) as err:
            return f"unreadable entry ({err})"
        return None

    def lookup(self, analysis: str, key: str) -> Path | None:
        """The entry's folder if it exists and is whole; a broken entry is removed and None returned (and
        :attr:`last_corruption` says why)."""
        self._last_corruption = ""
        entry = self.entry_dir(analysis, key)
        try:
            if not entry.is_dir():
                return None
        except OSError:
            return None
        reason = self.validate(entry, key)
        if reason is None:
            return entry
        self._discard(entry)
        self._last_corruption = reason
        return None

    def store(self, analysis: str, key: str, material: Mapping[str, Any], write: Callable[[Path], Any],
              record: Callable[[Path], Any] | None = None) -> Path | None:
        """Run ``write(tmpdir)``, checksum what it wrote, add the manifest, rename the folder into place.

        ``record(tmpdir)``, if given, returns a small JSON-ready summary of the entry (read back from what was just
        written), kept in the manifest so that a hit can be described without loading the entry
        (:meth:`record`). Returns the entry's folder, or None where the cache cannot be written (said once
        through ``on_warning``; nothing half-written is left). An error of ``write`` or ``record`` itself is
        not the cache's: it propagates."""
        if not (self.enabled and self.writable):
            return None
        final = self.entry_dir(analysis, key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.parent / f".tmp-{key[:16]}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
        except OSError as err:
            self._unwritable(err)
            return None
        try:
            try:
                write(tmp)
            except OSError as err:
                if not _about_cache(err, self.root):
                    raise
                self._unwritable(err)
                return None
            files = {}
            for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
                rel = path.relative_to(tmp).as_posix()
                files[rel] = {"sha256": _file_sha256(path), "bytes": path.stat().st_size}
            if not files:
                raise RuntimeError(f"the {analysis} analysis saved no files to cache")
            manifest = {"format": CACHE_FORMAT, "analysis": analysis, "key": key, "files": files,
                        "key_material": material}
            if record is not None:
                manifest["record"] = record(tmp)
            try:
                write_json_atomic(tmp / MANIFEST, manifest)
                interrupts.checkpoint()  # a fit cut short by Ctrl-C must not become a cache entry
                if final.exists():  # a stale or concurrent entry: move it aside, then take its place
                    self._discard(final)
                try:
                    os.replace(tmp, final)
                except OSError as err:
                    # another process stored the same entry between the two lines above: keep theirs if whole
                    if err.errno in (errno.ENOTEMPTY, errno.EEXIST) and self.validate(final, key) is None:
                        return final
                    raise
            except OSError as err:
                self._unwritable(err)
                return None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def record(self, entry: Path) -> Any:
        """The record kept in a (validated) entry's manifest by :meth:`store`, or None where there is none."""
        try:
            return json.loads((entry / MANIFEST).read_text(encoding="utf-8")).get("record")
        except (OSError, ValueError, AttributeError):
            return None

    @property
    def last_corruption(self) -> str:
        """Why the last :meth:`lookup` found its entry broken ('' if it was whole or absent)."""
        return self._last_corruption

    def get_or_compute(
        self,
        analysis: str,
        material: Mapping[str, Any],
        compute: Callable[[], T],
        save: Callable[[T, Path], Any],
        load: Callable[[Path], T],
    ) -> tuple[T, CacheEvent]:
        """The cached result for ``material`` if whole, else ``compute()`` it and store it with ``save``."""
        key = fit_key(material)
        if not self.enabled:
            event = CacheEvent(analysis, key, "disabled")
            self.events.append(event)
            return compute(), event
        result, corruption = self.fetch(analysis, key, load)
        if result is not None:
            event = CacheEvent(analysis, key, "hit")
            self.events.append(event)
            return result, event
        result = compute()
        if self.store(analysis, key, material, lambda d: save(result, d)) is None:
            event = CacheEvent(analysis, key, "not stored", self.unwritable_reason)
        else:
            event = CacheEvent(analysis, key, "refit" if corruption else "miss", corruption)
        self.events.append(event)
        return result, event

    def fetch(self, analysis: str, key: str, load: Callable[[Path], T]) -> tuple[T | None, str]:
        """(result, "") for a whole entry; (None, why) where the entry was corrupt (and is now removed);
        (None, "") where there is none."""
        self._last_corruption = ""
        entry = self.lookup(analysis, key)
        if entry is None:
            return None, self._last_corruption
        try:
            return load(entry), ""
        except Exception as err:  # noqa: BLE001 - any failure to read back means: refit
            self._discard(entry)
            return None, f"entry did not load ({type(err).__name__}: {err})"

    def _discard(self, entry: Path) -> None:
        trash = entry.parent / f".trash-{entry.name[:16]}-{uuid.uuid4().hex[:8]}"
        try:
            os.replace(entry, trash)
        except OSError:
            trash = entry
        shutil.rmtree(trash, ignore_errors=True)


#: What a full, read-only or forbidden disk raises (some writers, h5py among them, do not name the file).
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO)


def _about_cache(err: OSError, root: Path) -> bool:
    """Whether an error raised while writing into the cache is the cache's disk failing (not a bug)."""
    if err.filename is None:
        return err.errno in _DISK_ERRNOS
    try:
        return Path(err.filename).absolute().is_relative_to(Path(root).absolute())
    except (TypeError, ValueError):
        return False


def _netcdf_unreadable(path: Path) -> str | None:
    """Why a netCDF (HDF5) file cannot be opened, or None. Opening checks the file's structure and that it is as
    long as its superblock says (a truncated file fails here); the data themselves are covered by the manifest's
    checksum and read by the analysis' ``load``, whose failure refits the entry (:meth:`FitCache.fetch`), so
    they are not read twice."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            handle.keys()
    except Exception as err:  # noqa: BLE001 - h5py raises many types for a damaged file
        return f"{type(err).__name__}: {err}"
    return None
