# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DCGAN  := $(VENV)/bin/dcgan
DEMO_DATA := data
DEMO_RUNS := runs

.PHONY: demo test test-fast bench clean help

help:
	@echo "make demo      - set up .venv, train on 100 offline faces, write a sample grid"
	@echo "make test      - set up .venv with test deps and run the whole test suite (what CI runs)"
	@echo "make test-fast - the tests that neither train for long nor start a process: the inner loop"
	@echo "make bench     - print training, loop and input-pipeline throughput, and sample quality vs a reference"

$(VENV)/.installed-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$*]"
	touch $@

demo: $(VENV)/.installed-demo
	$(DCGAN) download lfw-sample --data-dir $(DEMO_DATA)
	$(DCGAN) preprocess lfw-sample --data-dir $(DEMO_DATA) --size 32 --crop none --channels 1
	$(DCGAN) train --preset demo --data $(DEMO_DATA)/processed/lfw-sample-32 --runs-dir $(DEMO_RUNS)
	$(DCGAN) sample -n 16 $(DEMO_RUNS)/demo-samples.png --runs-dir $(DEMO_RUNS)
	@echo "Grid written: $(DEMO_RUNS)/demo-samples.png (per-epoch grids under the run's samples/)"

# Two processes (most tests keep one core busy), a module in one (--dist loadfile), so each module-scoped
# fixture (test_bench_quality's scored data sets, test_hostile's run, test_identity's trained network) is built
# once; --dist load or worksteal would build each in both processes. loadfile's cost is that a module's tests
# queue on one core: that pinned test_hostile's 56 subprocess cases (~5 min) to one, the critical path. They now
# run in-process (~30 s), and the longest modules left (test_distribute, test_bench_quality: 2-3 min alone)
# are collected early, so they end well inside half the suite. (--dist loadgroup, grouping only the tests
# that share a fixture, would be finer, but with pytest 9.2 and xdist 3.8 it silently stops grouping:
# pytest-dev/pytest-xdist#1386.) --durations lists the slowest tests, to keep the tiers honest: a test over
# ~5 s is marked slow, and one that starts a Python process is marked subprocess (pyproject.toml's markers;
# conftest.py fails an unmarked one).
PYTEST := $(PY) -m pytest -q -n 2 --dist loadfile

test: $(VENV)/.installed-test
	$(PYTEST) --durations=15

test-fast: $(VENV)/.installed-test
	$(PYTEST) --durations=10 -m "not slow and not subprocess"

PEERS := $(wildcard ../shared/bench/peer_keras.py)
TORCH_PY := $(wildcard /tmp/torchenv/bin/python)

bench: $(VENV)/.installed-test
	$(DCGAN) bench --parts step,loop,input,preprocess,quality $(if $(PEERS),--peers ../shared/bench) \
		$(if $(TORCH_PY),--torch-python $(TORCH_PY))

# docs/commands.md is the CLI's --help, generated (tests/test_docs.py fails when it is stale).
.PHONY: docs
docs: $(VENV)/.installed-test
	$(PY) scripts/gen_commands.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
