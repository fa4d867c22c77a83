# What a newcomer runs: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SHARED ?= ../shared
export DFPIPE_WEIGHTS_DIR ?= $(abspath $(SHARED)/weights):$(abspath $(SHARED)/data/facemesh)
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch first: on this kind of machine pip takes these from local disk; elsewhere any
	# CUDA/CPU build in the pyproject range works (pre-install yours to keep it).
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "torch==2.14.1" "torchvision==0.29.1" \
		|| $(PIP) install "torch>=2.1,<3" "torchvision>=0.16"
	$(PIP) install -e ".[dev]"
	touch $@

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
