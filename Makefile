# Two commands do all the set-up on a fresh machine (see README.md):
#   make run    the main job: `rluf run` on the simulated deployment, report in runs/default/report.html
#   make test   the test suite
.PHONY: setup run quick test lint

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/rluf simulate --out runs/default

quick: setup
	.venv/bin/rluf simulate --out runs/quick --quick

test: setup
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check src tests benchmarks
