# Every target runs its idempotent set-up first (a few seconds once everything is installed).
PYTHON := .venv/bin/python
# Upstream detectron2 main, built with its C++ ops from a source archive (or folder, or git URL)
# into a second environment.
D2MAIN_VENV := .venv-d2main
D2MAIN_SOURCE ?= ../shared/detectron2-main.tar.gz

.PHONY: setup demo test setup-d2main test-d2main
setup:
	bash tools/setup_env.sh

# DEMO_ARGS: e.g. --overwrite to train the demo again into output/shapes_demo
demo: setup
	$(PYTHON) tools/demo.py $(DEMO_ARGS)

test: setup
	$(PYTHON) -m pytest -q

setup-d2main:
	FRCNN_VENV="$(CURDIR)/$(D2MAIN_VENV)" DETECTRON2_SOURCE="$(abspath $(D2MAIN_SOURCE))" \
		bash tools/setup_env.sh

test-d2main: setup-d2main
	$(D2MAIN_VENV)/bin/python -m pytest -q
