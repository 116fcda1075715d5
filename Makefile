# The two set-up commands of the README are `make demo` and `make test`. Each installs what it
# needs on a fresh Debian machine with Python 3.11 (system packages when missing, a virtual
# environment, torch's CPU build first, then pydata itself, non-editable) and then runs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
TORCH_VERSION ?= 2.13.0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := liblz4-dev pkg-config g++ cmake make python3-venv

.PHONY: demo test system venv install install-test stage stubs clean

demo: install
	$(BIN)/pydata demo

test: install-test
	$(BIN)/pytest

# System packages, installed only when missing.
system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# torch first, pinned, so that no later requirement can pull a CUDA build from the registry.
venv: system
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) install -q "torch==$(TORCH_VERSION)"

install: venv
	$(PIP) install -q -c constraints.txt .

# The dali extra too: the DALI adapter's tests run CPU-only pipelines.
install-test: venv
	$(PIP) install -q -c constraints.txt ".[test,dali]"

# Developer inner loop: build _core into BUILD and stage an importable package there, without
# touching the installed one. Use: make stage BUILD=build/dev && PYTHONPATH=build/dev/stage pytest
BUILD ?= build/dev
stage:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE=$(abspath $(BIN)/python) \
	  -Dpybind11_DIR=$$($(BIN)/python -m pybind11 --cmakedir) >/dev/null
	cmake --build $(BUILD) --target _core -j 2
	rm -rf $(BUILD)/stage && mkdir -p $(BUILD)/stage/pydata
	for f in $(abspath pydata)/*; do ln -s $$f $(BUILD)/stage/pydata/; done
	ln -s $(abspath models) $(BUILD)/stage/pydata/models
	cp $(BUILD)/_core*.so $(BUILD)/stage/pydata/

# Regenerate the committed type stub from the installed extension (tests/unit/test_stubs.py checks it).
stubs: install-test
	cd /tmp && $(abspath $(BIN)/python) -m pybind11_stubgen pydata._core -o $(abspath build/stubs)
	cp build/stubs/pydata/_core.pyi pydata/_core.pyi

clean:
	rm -rf build dist wheelhouse
