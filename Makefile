# make run   — set everything up, then start the dashboard on the bundled default model
# make test  — set everything up, then run the whole test suite
.PHONY: setup run test bench
export PYANNOTE_METRICS_ENABLED ?= 0
export HF_HUB_OFFLINE ?= 1

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/python scripts/serve.py

test: setup
	.venv/bin/python -m pytest -q -p no:cacheprovider

bench: setup
	.venv/bin/python bench/run_all.py
