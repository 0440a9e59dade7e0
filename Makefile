# Everything a fresh machine needs: `make run` (main job) and `make test` (test suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned in the same command so pip never resolves MONAI to a CUDA build
	$(PY) -m pip install -q "torch==2.13.0" -e ".[test,peers]"
	touch $(STAMP)

# main job: the hippocampus bundle, five-fold cross-validation (resumable: finished folds/stages are skipped)
run: $(STAMP)
	$(PY) -m monai_snn.apps.cross_validation --bundle_root bundles/hippocampus_snn --output_dir runs/hippo --folds 0 1 2 3 4
	$(PY) -m monai_snn.apps.summary --runs runs/hippo --metrics dice_3d_mean dice_2d_mean --output_dir runs/hippo/summary

# quick look (about 5 min): train a small ANN, convert it, print ANN vs SNN variants
demo: $(STAMP)
	$(PY) -m monai_snn.demo

test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile tests

bench: $(STAMP)
	$(PY) benchmarks/simulation.py
	$(PY) benchmarks/neuron_update.py
	$(PY) benchmarks/finetune.py

clean:
	rm -rf $(VENV)
