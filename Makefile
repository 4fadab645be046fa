# Both targets run the idempotent set-up first (a few seconds once everything is installed).
PYTHON := .venv/bin/python

.PHONY: setup demo test
setup:
	bash tools/setup_env.sh

demo: setup
	$(PYTHON) tools/demo.py

test: setup
	$(PYTHON) -m pytest -q
