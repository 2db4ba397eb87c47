# Two entry points: `make repro` (set up, then run the default pipeline) and `make test`; `make reproduce`
# checks that the committed run reproduces (README: "Does the committed run reproduce?").
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup repro test bench reproduce clean-venv

setup: $(STAMP)

# Reinstall whenever the dependency pins change.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: fli2moe needs Python 3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Stage commands call `python`: the virtualenv's must come first on PATH.
repro: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest

# Re-run the committed default pipeline from scratch in a clone (its own virtualenv, no DVC cache) and compare
# every headline figure and verdict of its reports/summary.json with the committed one (fli2moe.reproduce).
ifndef SCRATCH
SCRATCH := $(shell mktemp -d -u -t fli2moe-reproduce.XXXXXX)
endif
reproduce: $(STAMP)
	rm -rf $(SCRATCH)
	git clone --quiet "$(CURDIR)" $(SCRATCH)
	cp $(SCRATCH)/reports/summary.json $(SCRATCH)/committed-summary.json
	$(MAKE) -C $(SCRATCH) repro
	$(BIN)/python -m fli2moe.reproduce $(SCRATCH)/committed-summary.json $(SCRATCH)/reports/summary.json

bench: $(STAMP)
	for b in benchmarks/*.py; do PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
