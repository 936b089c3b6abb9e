# Two commands do everything: `make demo` and `make test`. Both create .venv and install the project first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: install demo test lint format bench bench-gpu clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh $(DEMO_OUT)

# HF_HUB_OFFLINE=1 as .ci/run sets it: the Hub client reads it at import, so a local run matches CI's
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/rankset_build.py
	$(BIN)/python benchmarks/harvest_download.py
	$(BIN)/python benchmarks/harvest_hosts.py
	$(BIN)/python benchmarks/dedup_hashes.py
	$(BIN)/python benchmarks/clip_filter_throughput.py --model ViT-B-32 --images 192 --batch-size 32 --repeats 3
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/train_step.py --paradigm multitask --steps 30
	$(BIN)/python benchmarks/eval_tiling.py --models cfcn,vgg16-density --size 1024x1536 --tiles 512,1024

bench-gpu: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH OUT=$${OUT:-gpu-out} bash benchmarks/gpu.sh

clean:
	rm -rf $(DEMO_OUT) bench-out gpu-out .pytest_cache .ruff_cache
