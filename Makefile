# The two commands a user types: `make bench` and `make test`. Both set up .venv from requirements.lock
# first (recreated when the lock, pyproject.toml or the Python it was made with changes).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BENCH := $(VENV)/bin/bench
SUITE ?= default
ARGS ?=
RUN ?=
RESULTS ?=
RESULTS_ARG := $(if $(RESULTS),--results $(RESULTS))

.PHONY: bench test lint benchmark venv clean-venv submit tables plots report site

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || \
		{ echo "backprop-bench needs Python >= 3.10 (PYTHON=$(PYTHON) is older)"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(VENV)/bin/python -c 'import sys; print(sys.version)' > $(STAMP)

# SUITE= (empty) runs exactly the overrides in ARGS: the form `bench cite` prints.
bench: $(STAMP)
	$(BENCH) run $(if $(SUITE),suite=$(SUITE)) $(ARGS)

# make submit RUN=results/runs/<run> [RESULTS=DIR]: validate a run's records and copy them into the folder.
submit: $(STAMP)
	@test -n "$(RUN)" || { echo "make submit needs RUN=<a run directory or record files>"; exit 2; }
	$(BENCH) submit $(RUN) $(RESULTS_ARG)

# Tables and plots regenerated from the results folder alone.
plots: $(STAMP)
	$(BENCH) table $(RESULTS_ARG)
	$(BENCH) plot $(RESULTS_ARG)

# The claims report: tables, plots, then a verdict per seed claim into <results>/claims.md, then the site.
report: plots
	$(BENCH) claims $(RESULTS_ARG) --format md --out $(if $(RESULTS),$(RESULTS),results)/claims.md
	$(BENCH) site $(RESULTS_ARG)

# The results folder as a static website in <results>/site/ (open site/index.html; the plots it shows first).
site: plots
	$(BENCH) site $(RESULTS_ARG)

# pytest-xdist: one worker per core (at most 4), a module per worker (its module-scoped fixtures, a SLURM cluster
# or a case run, are set up once); plain `pytest` runs them one after another. CI's 2 cores: 16 min -> 12 min.
TEST_WORKERS ?= -n auto --maxprocesses=4 --dist loadscope
test: $(STAMP)
	$(VENV)/bin/python -m pytest $(TEST_WORKERS) $(ARGS)

# ruff (configured in pyproject.toml): the formatting and the lint rules the code keeps.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check harness tests
	$(VENV)/bin/ruff check harness tests

# pytest-benchmark: the harness's timed loop against a bare hand-written loop (figures, not assertions).
benchmark: $(STAMP)
	$(VENV)/bin/python -m pytest tests/test_benchmarks.py -p no:xdist --benchmark-enable --benchmark-only \
		--benchmark-columns=min,median,mean,stddev,rounds $(ARGS)

clean-venv:
	rm -rf $(VENV)
