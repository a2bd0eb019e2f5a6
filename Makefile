# The two commands of the README:  `make run` (main job)  and  `make test` (test suite).
# Both set up .venv on first use; point them at a Python >= 3.12 with PYTHON=/path/to/python if needed.
.PHONY: setup run test test-slow bench clean

setup:
	@bash scripts/bootstrap.sh

run: setup
	.venv/bin/isletbayes run

# the fast suite in parallel, one worker per core (at most 4), each test file kept on one worker (its fixtures)
test: setup
	.venv/bin/python -m pytest --numprocesses=auto --maxprocesses=4 --dist=loadfile

test-slow: setup
	.venv/bin/python -m pytest -m slow

bench: setup
	.venv/bin/python -m benchmarks

clean:
	rm -rf .venv reports/out .pytest_cache
