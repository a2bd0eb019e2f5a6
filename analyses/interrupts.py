"""Interrupts (Ctrl-C) that are honoured: a run stops within seconds, keeps what it finished, and never looks done.

Why this is needed: both NUTS samplers the toolkit uses catch ``KeyboardInterrupt`` while they sample and
*return the draws made so far* (``nutpie.sample`` aborts and returns a partial trace; PyMC's ``pm.sample``
stops its loop and returns what it has). Code above them then carries on with the next fit as if nothing had
happened, and could even save a result computed from a partial trace.

:class:`InterruptGuard` (installed by the command line around every command) therefore

* replaces the SIGINT handler while a command runs: the first Ctrl-C sets a flag and raises
  ``KeyboardInterrupt`` as usual;
* if something swallows that exception, re-raises it in the main thread every :data:`REPEAT_S` seconds
  (a SIGINT sent to the main thread) until it propagates: a swallowed interrupt aborts the next sampler within a
  fraction of a second and is raised again in ordinary code;
* lets code that writes results call :func:`checkpoint` first: after a Ctrl-C it raises ``KeyboardInterrupt``
  instead of letting a possibly partial result be written (the simulation runner, the fit cache and the output
  folder call it before every durable write);
* records whether an interrupt happened (:func:`interrupted`), so that the command line exits with status 130
  even if the interrupt was swallowed and the command returned normally.

Worker processes (the main job's section processes, the simulation runner's local workers) ignore SIGINT
(:func:`worker_init`): the terminal sends Ctrl-C to the whole process group, and the parent alone decides to
stop them (:func:`terminate_pool`). A worker also ends itself as soon as the run's process is gone, so
``kill -9`` of a run leaves no orphan computing on (or waiting forever for work).

Without a guard (the Python API, tests) :func:`checkpoint` and :func:`interrupted` are no-ops.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

#: Seconds between repeated interrupts while an interrupt has been swallowed and not yet seen propagating.
REPEAT_S = 0.5

_active: "InterruptGuard | None" = None


class InterruptGuard:
    """Context manager: honour Ctrl-C in the main thread (see the module docstring). Not re-entrant."""

    def __init__(self, repeat_s: float | None = None) -> None:
        self.repeat_s = REPEAT_S if repeat_s is None else repeat_s
        self.interrupted = False
        self.acknowledged = False  # a KeyboardInterrupt was seen propagating: stop repeating it
        self.active = False
        self._simulated = False
        self._previous: Any = None
        self._main_ident: int | None = None
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        self.hint: Callable[[], str] | str | None = None

    def __enter__(self) -> "InterruptGuard":
        global _active
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread; nothing to guard
        self._main_ident = threading.main_thread().ident
        self._previous = signal.signal(signal.SIGINT, self._handle)
        self.active = True
        _active = self
        return self

    def __exit__(self, *exc: Any) -> None:
        global _active
        if not self.active:
            return
        self.active = False
        self._stop.set()
        signal.signal(signal.SIGINT, self._previous if self._previous is not None else signal.default_int_handler)
        _active = None

    def _handle(self, signum: int, frame: Any) -> None:
        simulated, self._simulated = self._simulated, False
        if not self.active:
            return
        if simulated and self.acknowledged:
            return  # the interrupt is already on its way up; a repeat would only disturb the clean-up
        self.interrupted = True
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._repeat, name="isletbayes-interrupt", daemon=True)
            self._watchdog.start()
        raise KeyboardInterrupt

    def _repeat(self) -> None:
        while not self._stop.wait(self.repeat_s):
            if self.acknowledged or not self.active:
                return
            self._simulated = True
            # a real signal to the main thread (not _thread.interrupt_main): it also wakes a blocking wait
            signal.pthread_kill(self._main_ident, signal.SIGINT)

    def resume_hint(self) -> str:
        """The one line telling the user how to resume (set by the command through :func:`set_resume_hint`)."""
        hint = self.hint() if callable(self.hint) else self.hint
        return hint or "nothing was written; rerun the command to start again"


def interrupted() -> bool:
    """True once Ctrl-C was pressed while a guard is installed."""
    return _active is not None and _active.interrupted


def checkpoint() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed (even if a sampler swallowed it): call before writing."""
    if interrupted():
        acknowledge()
        raise KeyboardInterrupt


def acknowledge() -> None:
    """A ``KeyboardInterrupt`` is propagating (an ``except KeyboardInterrupt`` clean-up is running): stop
    repeating it, so that the clean-up is not disturbed."""
    if _active is not None and _active.interrupted:
        _active.acknowledged = True


def set_resume_hint(hint: Callable[[], str] | str | None) -> None:
    """What the command line says after an interrupt: text, or a function called then (it may count files)."""
    if _active is not None:
        _active.hint = hint


# --- worker processes -------------------------------------------------------------------------------------


@contextmanager
def children_ignore_interrupts() -> Iterator[None]:
    """Start worker processes inside this block: SIGINT is blocked in this thread meanwhile, and a new process
    inherits the block, so a Ctrl-C that reaches a worker while it is still importing (before
    :func:`worker_init`; a multiprocessing fork server while it preloads) is not a ``KeyboardInterrupt``
    traceback on the terminal. This process loses nothing: another of its threads takes the signal, or it is
    delivered when the block ends."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def worker_init(main_pid: int | None = None) -> None:
    """Initializer of every worker process: ignore SIGINT (the parent decides), die with the run.

    ``main_pid``: the run's process. A worker of a multiprocessing fork server is the server's child, not the
    run's, and keeps the server alive (it holds the server's liveness pipe), so neither exits when the run is
    killed: a watcher thread ends the worker as soon as ``main_pid`` is gone (Linux: a pidfd, at once;
    elsewhere: checked every second). On Linux a worker also asks to be killed with its parent
    (``PR_SET_PDEATHSIG``), which covers workers the run started itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the watcher below still ends it
            pass
    if main_pid is not None and main_pid != os.getpid():
        threading.Thread(target=_exit_when_gone, args=(main_pid,), name="isletbayes-run-watcher",
                         daemon=True).start()


def _exit_when_gone(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        import select

        select.select([fd], [], [])  # readable when the process has exited
        os._exit(1)
    while True:  # pragma: no cover - no pidfd (not Linux >= 5.3)
        time.sleep(1.0)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass


def terminate_pool(pool: Any) -> None:
    """Stop a ``concurrent.futures.ProcessPoolExecutor`` now: cancel what has not started, kill what runs.

    ``shutdown(cancel_futures=True)`` alone would wait for the tasks that are running (a whole MCMC fit);
    Python 3.14 has ``terminate_workers()``, earlier versions only the executor's process table."""
    processes = dict(getattr(pool, "_processes", None) or {})  # before shutdown(), which forgets them
    for process in processes.values():
        if process.is_alive():
            process.kill()
    for process in processes.values():
        process.join(timeout=5)
    pool.shutdown(wait=False, cancel_futures=True)
