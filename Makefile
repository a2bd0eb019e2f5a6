# The two commands of the README:  `make run` (main job)  and  `make test` (test suite).
# Both set up .venv on first use; point them at a Python >= 3.12 with PYTHON=/path/to/python if needed.
.PHONY: setup run test test-slow bench clean

setup:
	@bash scripts/bootstrap.sh

run: setup
	.venv/bin/isletbayes run

test: setup
	.venv/bin/python -m pytest

test-slow: setup
	.venv/bin/python -m pytest -m slow

bench: setup
	.venv/bin/python -m benchmarks

clean:
	rm -rf .venv reports/out .pytest_cache
