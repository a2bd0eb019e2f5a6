"""Output folders that always describe one run: checked before any work, locked while written, replaced whole.

A command that writes a folder of results (``isletbayes run``, ``isletbayes design --out``)

1. checks the folder before anything is computed (:func:`check_output_folder`): it must be a folder or not exist
   yet, every existing part of its path must be a folder, the place it lives in must be writable (a probe folder
   is created and removed there), and an existing folder must be one this command wrote (it holds the command's
   marker file, e.g. ``results.json``) or be empty: a folder of the user's own is never replaced;
2. takes a lock beside it (:class:`OutputLock`, ``.<name>.lock``, an advisory ``flock`` that the system releases
   when the process ends, even by ``kill -9``): a second run on the same folder waits, saying so, then goes on;
3. writes everything into a hidden sibling (:func:`staging_folder`, ``.<name>.isletbayes-staging-...``) and only
   when all of it is written swaps the sibling in for the old folder (:func:`swap_into_place`): on Linux in one
   atomic ``renameat2(RENAME_EXCHANGE)``, elsewhere with two renames whose gap a later run repairs. A fault on the
   way (a full disk, an interrupt, a bad input found late) removes the sibling and leaves the old folder as it
   was; a ``kill -9`` leaves the sibling, which the next run on the folder removes.

:func:`filesystem_error` turns an ``OSError`` a user can cause (permission denied, read-only file system, no
space left, a file where a folder is expected, ...) into an :class:`~isletbayes.data.errors.InputError` naming
the path, so the command line reports it in one line with exit status 2.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from isletbayes.analyses import interrupts
from isletbayes.data.errors import InputError

STAGING = "isletbayes-staging"
OLD = "isletbayes-old"

#: errno -> plain words, for the faults a user's file system can cause (anything else stays a bug's traceback).
FILESYSTEM_FAULTS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EEXIST: "already exists",
    errno.ENOENT: "no such file or folder (was it removed while the run was going?)",
    errno.ENOTEMPTY: "folder is not empty",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EMLINK: "too many links",
    errno.EBUSY: "device or resource busy",
    errno.EXDEV: "cannot move between file systems",
    errno.EIO: "input/output error (the disk or network file system failed)",
    errno.ESTALE: "stale network file handle",
}


def is_filesystem_fault(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in FILESYSTEM_FAULTS


def filesystem_error(err: OSError, *, option: str | None = None, key: str | None = None,
                     doing: str | None = None) -> InputError:
    """An OSError as a user's error naming the path (and the option or key that chose it)."""
    words = FILESYSTEM_FAULTS.get(err.errno, err.strerror or str(err))
    if doing:
        words = f"{doing}: {words}"
    target = err.filename if err.filename is not None else None
    return InputError(words, file=target, option=option, key=key)


# --- 1. checking a folder before any work -----------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def check_output_folder(path: str | Path, *, option: str, marker: str | Iterable[str] = (),
                        what: str = "output folder") -> Path:
    """The absolute path of an output folder that can be written and replaced; InputError naming ``option``.

    ``marker``: names of files one of which an existing, non-empty folder must hold to be replaced (the
    command's own output); an empty folder or a new path is always fine. Nothing is created but a probe
    folder, removed at once, in the nearest existing parent."""
    final = Path(path).expanduser().absolute()
    if final.is_symlink() and final.resolve().is_dir():
        final = final.resolve()  # replace the folder the link points to; the link itself stays
    if final == Path(final.anchor):
        raise InputError(f"the {what} cannot be a file system root", option=option, file=final)
    markers = (marker,) if isinstance(marker, str) else tuple(marker)
    existing = _nearest_existing(final)
    if existing == final:
        if not final.is_dir():
            raise InputError(f"exists and is not a folder (the {what} must be a folder)", option=option, file=final)
        try:
            entries = [p.name for p in final.iterdir()]
        except OSError as err:
            raise filesystem_error(err, option=option) from None
        if entries and markers and not any((final / m).exists() for m in markers):
            shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
            raise InputError(f"holds other files than this command writes ({shown}); each run replaces its "
                             f"{what} whole, so give a new or empty folder, or one this command wrote",
                             option=option, file=final)
        probe_in = final.parent
    else:
        if not existing.is_dir():
            raise InputError(f"is a file, not a folder (the {what} {final} would be inside it)", option=option,
                             file=existing)
        probe_in = existing
    try:
        probe = tempfile.mkdtemp(prefix=".isletbayes-probe-", dir=probe_in)
    except OSError as err:
        raise InputError(f"cannot write here ({FILESYSTEM_FAULTS.get(err.errno, err.strerror)}); the {what} is "
                         f"written beside its final place, then swapped in", option=option, file=probe_in) from None
    os.rmdir(probe)
    return final


def check_folder_path(path: str | Path, *, option: str | None = None, what: str = "folder",
                      note: str = "") -> Path:
    """A path that must be a folder or not exist yet, inside folders (a file in the way is a user's mistake)."""
    target = Path(path).expanduser().absolute()
    existing = _nearest_existing(target)
    if existing == target and not target.is_dir():
        raise InputError(f"exists and is not a folder (the {what} must be a folder){note}", option=option,
                         file=target)
    if existing != target and not existing.is_dir():
        raise InputError(f"is a file, not a folder (the {what} {target} would be inside it){note}", option=option,
                         file=existing)
    return target


# --- 2. the lock ------------------------------------------------------------------------------------------


class OutputLock:
    """An exclusive advisory lock on an output folder (a ``.<name>.lock`` file beside it).

    ``on_wait(message)`` is called once if another process holds it; this one then waits for it. The system
    releases the lock when the holder exits, however it exits."""

    def __init__(self, final: Path, on_wait: Callable[[str], None] | None = None, *, option: str | None = None):
        self.final = Path(final)
        self.path = self.final.parent / f".{self.final.name}.lock"
        self.on_wait = on_wait
        self.option = option
        self._fh = None

    def __enter__(self) -> "OutputLock":
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")
        except OSError as err:
            raise filesystem_error(err, option=self.option, doing="cannot lock the output folder") from None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            self._fh = fh
            return self
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            if self.on_wait is not None:
                self.on_wait(f"waiting for another isletbayes run ({holder}) writing {self.final} to finish")
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            except BaseException:
                fh.close()
                raise
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}\n")
            fh.flush()
        except OSError:
            pass  # the lock holds without the note (a full disk cannot stop us from locking)
        self._fh = fh
        recover(self.final)
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the flock
            self._fh = None


def _siblings(final: Path, kind: str) -> list[Path]:
    try:
        return sorted(final.parent.glob(f".{final.name}.{kind}-*"))
    except OSError:
        return []


def recover(final: Path) -> None:
    """Under the lock: put back an old folder left aside by a swap that was killed halfway (two-rename
    fallback), and remove staging folders of runs that died."""
    old = _siblings(final, OLD)
    if not final.exists() and old:
        newest = max(old, key=lambda p: p.stat().st_mtime)
        os.replace(newest, final)
        old.remove(newest)
    for path in _siblings(final, STAGING) + old:
        shutil.rmtree(path, ignore_errors=True)


# --- 3. staging and the swap ------------------------------------------------------------------------------


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2 RENAME_EXCHANGE); False where not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the file system cannot exchange: fall back to two renames
    raise OSError(code, os.strerror(code), str(b))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def swap_into_place(staging: Path, final: Path) -> None:
    """Make ``staging`` the folder at ``final``; the old folder (if any) is removed afterwards."""
    interrupts.checkpoint()  # an interrupted run must not replace finished results with its own
    if os.path.lexists(final):
        if _exchange(staging, final):
            shutil.rmtree(staging, ignore_errors=True)  # now the old folder
        else:
            old = final.parent / f".{final.name}.{OLD}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, final)
    _fsync_dir(final.parent)


def _link_tree(src: Path, dest: Path) -> None:
    """Recreate ``src`` under ``dest`` with hard links (files written once, never changed in place), or copies
    where the file system cannot link."""
    for path in sorted(src.rglob("*")):
        target = dest / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file() and not path.name.startswith("."):  # leave temporary files of a dead writer behind
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


MARKER = ".isletbayes-staging"


def _token_of(staging: Path) -> str | None:
    try:
        return (staging / MARKER).read_text(encoding="utf-8")
    except OSError:
        return None


@contextmanager
def staging_folder(final: Path, *, keep: Iterable[str] = (), option: str | None = "--out") -> Iterator[Path]:
    """Yield a fresh hidden sibling of ``final`` to write into; on success swap it into place, on any error
    (or interrupt) remove it and leave ``final`` untouched. ``keep``: names inside the old folder carried into
    the new one (hard links) unless the new one writes them itself. If the sibling is removed while the run
    writes into it (someone deleted the folder it lives in; a writer may even have created it again, empty),
    the run stops with an InputError saying so, whatever error that caused first."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.{STAGING}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    token = uuid.uuid4().hex
    (staging / MARKER).write_text(token, encoding="utf-8")

    def removed() -> InputError:
        return InputError(f"the folder being written ({staging.name}) was removed during the run; the previous "
                          f"results, if any, are as they were", option=option, file=final.parent)

    try:
        try:
            yield staging
        except (OSError, InputError) as err:
            if _token_of(staging) != token:
                raise removed() from err
            raise
        if _token_of(staging) != token:
            raise removed()
        (staging / MARKER).unlink()
        for name in keep:
            if (final / name).exists() and not (staging / name).exists():
                _link_tree(final / name, staging / name)
        swap_into_place(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
