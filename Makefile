# ailedger — set-up and everyday commands. Every target installs what it needs first
# and is safe to re-run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install tools demo test test-fast lint bench contracts clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## External tools the tests use for real: anvil (npm) and Go's x/mod (Debian).
tools:
	bash scripts/install_anvil.sh >/dev/null
	bash scripts/install_go.sh

demo: install
	$(BIN)/ailedger demo

test: install tools lint
	$(BIN)/python -m pytest -n 2 -q

test-fast: install
	$(BIN)/python -m pytest -n 2 -q --ignore=tests/chain --ignore=tests/interop

lint: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy --strict src/ailedger
	$(BIN)/python scripts/build_contracts.py --check

bench: install tools
	$(BIN)/python benchmarks/run.py

contracts: install
	$(BIN)/python scripts/build_contracts.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
