"""Progress bars: drawn for the fits of a command run in a terminal, never with -q, --json or a pipe, and never
changing a draw.

The command-line checks run `isletbayes binary` (one end point, short MAP fits) in one Python process whose
standard streams are a pseudo-terminal (the ``pty`` module), first as a user types it, then with ``-q``, then
with ``--json``, then with stdout and stderr redirected into a pipe; each run gets its own seed, so every run
fits its MAP prior afresh (the analysis keeps fits per seed in the process).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time

import numpy as np
import pymc as pm
import pytest

from isletbayes.models.sampling import (SamplerSettings, fit, progress_reporter, reported_steps,
                                        reporting_progress, total_iterations)


class Recorder:
    """A ProgressReporter that keeps every call."""

    def __init__(self):
        self.calls: list[tuple] = []

    def fit_started(self, description, total_steps):
        self.calls.append(("started", description, total_steps))

    def fit_advanced(self, completed_steps):
        self.calls.append(("advanced", completed_steps))

    def fit_finished(self):
        self.calls.append(("finished",))


def _model():
    with pm.Model() as model:
        p = pm.Beta("p", 1.0, 1.0)
        pm.Binomial("r", n=12, p=p, observed=10)
    return model


@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_a_fit_reports_its_iterations_and_gives_the_same_draws(seed, sampler):
    settings = SamplerSettings(draws=300, tune=200, chains=2, cores=1, nuts_sampler=sampler, seed=seed(20250620))
    model = _model()
    plain = fit(model, settings)
    recorder = Recorder()
    with reporting_progress(recorder):
        reported = fit(model, settings, label="test fit")
    assert progress_reporter() is None  # the reporter is set for the block only
    np.testing.assert_array_equal(plain["posterior"]["p"].values, reported["posterior"]["p"].values)
    np.testing.assert_array_equal(plain["sample_stats"]["diverging"].values,
                                  reported["sample_stats"]["diverging"].values)

    kinds = [c[0] for c in recorder.calls]
    assert kinds[0] == "started" and kinds[-1] == "finished" and kinds.count("started") == 1
    _, description, total = recorder.calls[0]
    assert description.startswith("test fit") and f"{sampler}, 2 chains" in description
    assert total == total_iterations(settings) == 2 * (200 + 300)
    counts = [c[1] for c in recorder.calls if c[0] == "advanced"]
    assert counts and counts == sorted(counts) and len(set(counts)) == len(counts)  # never backwards
    assert counts[-1] == total  # the last report: every iteration of every chain done


def test_reported_steps_nest_and_do_nothing_without_a_reporter():
    with reported_steps("no one listens", 3) as advance:
        advance(1)  # no reporter: a no-op, no error
    recorder = Recorder()
    with reporting_progress(recorder):
        with reported_steps("outer", None):
            with reported_steps("inner", 2) as advance:
                advance(1)
                advance(1)  # repeated: not reported twice
                advance(2)
            advance(3)  # after the task closed: dropped
    assert recorder.calls == [("started", "outer", None), ("started", "inner", 2), ("advanced", 1),
                              ("advanced", 2), ("finished",), ("finished",)]


# --------------------------------------------------------------------------------------------------------------
# the command line in a terminal
# --------------------------------------------------------------------------------------------------------------
DRIVER = textwrap.dedent("""
    import os, sys, threading
    from isletbayes.analyses.cli import main

    ARGS = ["binary", "--endpoint", "insulin_independence", "--no-safety", "--draws", "200", "--tune", "200",
            "--chains", "2", "--map-draws", "500", "--tau-panel", "halfnormal:1"]

    def run(label, extra, seed):
        print(f"=== {label}", file=sys.stderr, flush=True)
        code = main([*ARGS, "--seed", str(seed), *extra])
        sys.stdout.flush(); sys.stderr.flush()
        print(f"=== {label} exit {code}", file=sys.stderr, flush=True)

    run("terminal", [], 1)
    run("quiet", ["-q"], 2)
    run("json", ["--json"], 3)

    # stdout and stderr into a pipe (a thread drains it), then the terminal back
    saved = os.dup(1), os.dup(2)
    read, write = os.pipe()
    piped = []
    drain = threading.Thread(target=lambda: piped.append(os.fdopen(read, "rb").read()))
    drain.start()
    os.dup2(write, 1); os.dup2(write, 2); os.close(write)
    try:
        assert not sys.stderr.isatty() and not sys.stdout.isatty()
        main([*ARGS, "--seed", "4"])
        sys.stdout.flush(); sys.stderr.flush()
    finally:
        os.dup2(saved[0], 1); os.dup2(saved[1], 2)
    drain.join()
    print("=== pipe", file=sys.stderr, flush=True)
    sys.stderr.buffer.write(piped[0]); sys.stderr.flush()
    print("=== pipe exit 0", file=sys.stderr, flush=True)
""")

LIVE = "\x1b[?25l"  # rich hides the cursor while a live display (a progress bar or spinner) runs
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_terminal(args: list[str], timeout: float = 300.0) -> str:
    """Run ``args`` with stdin, stdout and stderr on a pseudo-terminal (160 columns); return what it wrote."""
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: the process has ended
                break
            if not chunk:
                break
            out += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    return out.decode(errors="replace")


def _runs(output: str) -> dict[str, str]:
    parts = re.split(r"=== (\w+)\r?\n", output)
    runs = {}
    for label, body in zip(parts[1::2], parts[2::2]):
        end = body.find(f"=== {label} exit ")
        assert end >= 0, f"run {label!r} did not finish: {body[-2000:]}"
        assert body[end:].startswith(f"=== {label} exit 0"), body[end:end + 80]
        runs[label] = body[:end]
    return runs


def test_progress_bars_in_a_terminal_and_none_when_quiet_json_or_piped(tmp_path):
    output = run_in_terminal([sys.executable, "-c", DRIVER])
    runs = _runs(output)
    assert set(runs) == {"terminal", "quiet", "json", "pipe"}

    terminal = ANSI.sub("", runs["terminal"])
    assert LIVE in runs["terminal"]
    # a bar for the MAP fit (its NUTS iterations: 2 chains x (200 warm-up + 500 draws)), under the command's spinner
    bars = re.findall(r"\[nutpie, 2 chains x 200 \+ 500\][^\r\n]*?(\d+)/1400", terminal)
    assert bars, terminal[-3000:]
    assert max(int(b) for b in bars) > 0
    assert "binary end points" in terminal
    assert "insulin_independence: 10/12" in terminal  # the table is still printed

    for label in ("quiet", "json", "pipe"):
        body = runs[label]
        assert LIVE not in body, label
        assert "chains x" not in body and "binary end points" not in body, label
    assert "insulin_independence: 10/12" in ANSI.sub("", runs["quiet"])
    # the JSON, then at most the failed convergence checks of these short fits (stderr shares the terminal)
    text = ANSI.sub("", runs["json"]).replace("\r\n", "\n")
    summary, end = json.JSONDecoder().raw_decode(text)
    assert "insulin_independence" in summary["endpoints"]
    assert all(line.startswith("FAILED ") for line in text[end:].splitlines() if line.strip()), text[end:]
    piped = runs["pipe"]
    assert "insulin_independence: 10/12" in piped and "\x1b[" not in piped  # plain text into a pipe
