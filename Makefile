# Everything a fresh machine needs: `make run` (main job) and `make test` (test suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned in the same command so pip never resolves MONAI to a CUDA build
	$(PY) -m pip install -q "torch==2.13.0" -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m monai_snn.demo

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/simulation.py

clean:
	rm -rf $(VENV)
