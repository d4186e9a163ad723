# textguard: every target sets up what it needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on this machine's disk; pinning it first stops pip from pulling a
# multi-GB CUDA build for the permissive range in pyproject.toml.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
# English HateCheck, evaluation only, from the shared datasets folder when it is on this machine.
HATECHECK ?= $(or $(TEXTGUARD_SHARED_DATASETS),../shared/datasets)/hatecheck_en/test_suite_cases.csv

.PHONY: help setup test test-slow lint typecheck format demo serve bench clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev,spark]"
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv: pinned CPU torch, then the project with its dev extras

test: $(STAMP) ## Run the test suite (fast tests; ruff and mypy included)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q

test-slow: $(STAMP) ## Run the slow tests (multi-process training, soak, crash safety), bounded in time
	TEXTGUARD_RUN_SLOW=1 $(BIN)/pytest -q -m slow || test $$? -eq 5

lint: $(STAMP) ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy on the library
	$(BIN)/mypy

format: $(STAMP) ## Format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP) ## The main job on the offline model: prepare seed + stance data, card, train, evaluate, promote
	$(BIN)/textguard data prepare --config configs/data/quickstart.yaml
	$(BIN)/textguard data card --config configs/data/quickstart.yaml
	$(BIN)/textguard train --config configs/quickstart.yaml
	$(BIN)/textguard evaluate --model models:/textguard@candidate --data data/prepared/quickstart \
		--suite textguard/resources/suites/meeting_functional.csv \
		--suite textguard/resources/suites/meeting_multilingual.csv \
		$(if $(wildcard $(HATECHECK)),--suite hatecheck_en=$(HATECHECK)) \
		--perturb obfuscation,caption,typos
	$(BIN)/textguard promote --from-alias candidate --alias champion --reason "make demo"
	@echo
	@echo "Serve it:        $(BIN)/textguard serve --model models:/textguard@champion"
	@echo "Open MLflow UI:  $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db"

serve: $(STAMP) ## Serve the champion model on 127.0.0.1:8000
	$(BIN)/textguard serve --model models:/textguard@champion

bench: $(STAMP) ## Benchmarks: ratios against a baseline measured in the same run
	$(BIN)/python bench/prepare_throughput.py
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/backbone_throughput.py
	$(BIN)/python bench/serve_load.py --processes 1 2
	$(BIN)/python bench/serve_load.py --backbone e5 --processes 1 2
	$(BIN)/python bench/encoder_layouts.py
	$(BIN)/python bench/encoder_layouts.py --compare last-layer
	$(BIN)/python bench/encoder_layouts.py --compare last-layer --backbone e5
	$(BIN)/python bench/gc_pauses.py
	$(BIN)/python bench/soak.py
	$(BIN)/python bench/robustness_gap.py
	$(BIN)/python bench/known_content.py

clean: ## Remove build outputs, prepared data and local MLflow state (keeps .venv)
	rm -rf data/prepared mlruns mlflow.db mlartifacts .pytest_cache .mypy_cache .ruff_cache textguard_audit.db*
