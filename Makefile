# Two commands do all the set-up on a fresh machine (see README.md):
#   make run    the main job: `rluf run` on the simulated deployment, report in runs/default/report.html
#   make quick  the same loop on the small world (a few minutes)
#   make test   the test suite
.PHONY: setup run quick test lint

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/rluf run --out runs/default

quick: setup
	.venv/bin/rluf run --quick --out runs/quick

test: setup
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check src tests benchmarks
