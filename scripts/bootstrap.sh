#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with a Python >= 3.12.
#
# Which Python: $PYTHON if set (e.g. PYTHON=/opt/python3.13/bin/python3); otherwise the first of
# python3.12, python3.13, python3 on PATH that is >= 3.12; otherwise a pyenv-installed 3.12/3.13.
# The install is redone only when pyproject.toml changes (stamp file in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

ok_python() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }

find_python() {
    if [ -n "${PYTHON:-}" ]; then
        if ok_python "$PYTHON"; then echo "$PYTHON"; return 0; fi
        echo "isletbayes: PYTHON=$PYTHON is not a Python >= 3.12" >&2; return 1
    fi
    for cand in python3.12 python3.13 python3; do
        if command -v "$cand" >/dev/null 2>&1 && ok_python "$cand"; then command -v "$cand"; return 0; fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])' | sort -V); do
            p="$(pyenv root)/versions/$v/bin/python3"
            if ok_python "$p"; then echo "$p"; return 0; fi
        done
    fi
    echo "isletbayes: no Python >= 3.12 found. Install one, or point at it: PYTHON=/path/to/python3.12 make test" >&2
    return 1
}

# Byte-compile the package's sources, as a regular (non-editable) install does. An editable install leaves this
# to the first import, which a machine with PYTHONDONTWRITEBYTECODE set never does: every command would then
# recompile each module from source (0.3 s or more per command). Files already up to date are skipped.
compile_sources() { .venv/bin/python -m compileall -q data models analyses reports >/dev/null || true; }

stamp=.venv/.isletbayes-installed
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && ok_python .venv/bin/python && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    compile_sources
    exit 0
fi
py="$(find_python)"
if [ ! -x .venv/bin/python ] || ! ok_python .venv/bin/python; then
    echo "isletbayes: creating .venv with $py ($("$py" --version))" >&2
    rm -rf .venv
    "$py" -m venv .venv
fi
echo "isletbayes: installing dependencies into .venv (first run takes a minute or two)" >&2
log=.venv/install.log
if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip \
       && .venv/bin/python -m pip install --disable-pip-version-check -e ".[dev]"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "isletbayes: installation failed (full log: $log)" >&2
    exit 1
fi
.venv/bin/python -c "import isletbayes.analyses.cli" || { echo "isletbayes: installation is broken (see $log)" >&2; exit 1; }
echo "$want" > "$stamp"
compile_sources
