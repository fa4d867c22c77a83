# What a newcomer runs: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SHARED ?= ../shared
export DFPIPE_WEIGHTS_DIR ?= $(abspath $(SHARED)/weights):$(abspath $(SHARED)/data/facemesh)
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test test-fast bench clean

SETUP_LOG := $(VENV)/setup.log
TORCH_HERE := "torch==2.14.1" "torchvision==0.29.1"
TORCH_ANY := "torch>=2.1,<3" "torchvision>=0.16"
# pip's chatter goes to $(SETUP_LOG); on failure its end is printed.
quietly = ( $(1) ) >> $(SETUP_LOG) 2>&1 || { echo "setup failed; the end of $(SETUP_LOG):"; tail -n 40 $(SETUP_LOG); exit 1; }

$(VENV)/.installed: pyproject.toml
	@echo "setup: installing dfpipe into $(VENV) (a few minutes the first time; pip's log: $(SETUP_LOG))"
	@$(PYTHON) -m venv $(VENV)
	@: > $(SETUP_LOG)
	@$(call quietly,$(PIP) install --upgrade pip)
	@# torch first: on this kind of machine pip takes these from local disk; elsewhere any
	@# CUDA/CPU build in the pyproject range works (pre-install yours to keep it).
	@$(PY) -c "import torch" 2>/dev/null || $(call quietly,$(PIP) install $(TORCH_HERE) || $(PIP) install $(TORCH_ANY))
	@$(call quietly,$(PIP) install -e ".[dev]")
	@echo "setup: done; run dfpipe as $(VENV)/bin/dfpipe, or after: source $(VENV)/bin/activate"
	@touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m dfpipe.demo --out demo_out

test: setup
	$(PY) -m pytest -q --timeout 1800

test-fast: setup
	$(PY) -m pytest -q -m "not slow" --timeout 600

bench: setup
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf demo_out bench_out .pytest_cache
