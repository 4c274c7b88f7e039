# The two commands a user types: `make bench` and `make test`. Both set up .venv from requirements.lock
# first (recreated when the lock, pyproject.toml or the Python it was made with changes).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BENCH := $(VENV)/bin/bench
SUITE ?= default
ARGS ?=

.PHONY: bench test benchmark venv clean-venv

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || \
		{ echo "backprop-bench needs Python >= 3.10 (PYTHON=$(PYTHON) is older)"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(VENV)/bin/python -c 'import sys; print(sys.version)' > $(STAMP)

bench: $(STAMP)
	$(BENCH) run suite=$(SUITE) $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)

# pytest-benchmark: the harness's timed loop against a bare hand-written loop (figures, not assertions).
benchmark: $(STAMP)
	$(VENV)/bin/python -m pytest tests/test_benchmarks.py --benchmark-enable --benchmark-only \
		--benchmark-columns=min,median,mean,stddev,rounds $(ARGS)

clean-venv:
	rm -rf $(VENV)
