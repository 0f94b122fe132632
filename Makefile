# Entry points for development. Run them in the environment where `pip install -e '.[dev]'` installed ghapp
# (the tools are taken from PATH). `.ci/run` does `lint`, then `test`, in a fresh venv.

.PHONY: help test-fast test lint format bench

help:
	@echo "make test-fast   the fast tests alone: pure core, golden files, settings, payloads (seconds)"
	@echo "make test        the whole suite: real PostgreSQL, real Terraform, real HTTP (minutes)"
	@echo "make lint        ruff check, ruff format --check, mypy"
	@echo "make format      ruff check --fix, then ruff format"
	@echo "make bench       how to run each benchmark (by hand, see docs/benchmarks.md)"

# `pytest -m fast` alone gives the same tests; naming the modules that mark some as fast also skips importing the
# others (the browser's, the fake GitHub's), which is most of the time on a busy machine.
test-fast:
	pytest -m fast $$(grep -l 'pytest.mark.fast' tests/test_*.py)

test:
	pytest

lint:
	ruff check .
	ruff format --check .
	mypy

format:
	ruff check --fix .
	ruff format .

bench:
	@echo "Benchmarks run by hand from the repository root (not by pytest, not in CI); docs/benchmarks.md has the results."
	@for f in bench/[!_]*.py; do \
		name=$$(basename $$f .py); \
		printf "  python -m bench.%-15s %s\n" "$$name" "$$(sed -n '1s/^\"\"\"//p' $$f | cut -c1-90)"; \
	done
