PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

PARSL_TESTS = $(shell $(PY) -c "import os, parsl.tests; print(os.path.dirname(parsl.tests.__file__))" 2>/dev/null)
# Tests whose premise does not hold here; docs/parsl-suite.md gives each reason.
PARSL_SUITE_MARKERS = -m "not cleannet and not issue_3620"
PARSL_SUITE_SKIP_ALL = not test_bad_stdout_file and not test_bad_stderr_file and not test_stdout_stderr_staging_zip
PARSL_SUITE_SKIP_NO_SHARED_FS = not (test_output_chain_filenames and test_behavior)
PARSL_SUITE = $(WITH_ENGINE) mkdir -p runinfo/parsl-suite && cd runinfo/parsl-suite && $(CURDIR)/$(PY) -m pytest "$(PARSL_TESTS)" -p no:cacheprovider -q --timeout 300 $(PARSL_SUITE_MARKERS)

.PHONY: setup demo test test-slurm docs bench parsl-suite parsl-suite-no-shared-fs parsl-suite-shared-fs parsl-suite-cold clean

setup: $(VENV)/.installed
	@tools/install_work_queue.sh $(PY)

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(PY) examples/quickstart.py

# ENGINE=debian (default): Debian's coop-computing-tools 9.9, installed by setup.
# ENGINE=7.17.1: cctools 7.17.1 built from ../shared/engines by tools/build_cctools.sh (cached, outside the checkout).
ENGINE ?= debian
TESTS ?= tests
ifeq ($(ENGINE),7.17.1)
WITH_ENGINE = PREFIX=$$(PYTHON=$(PYTHON) tools/build_cctools.sh) && \
	export PATH="$$PREFIX/bin:$$PATH" PYTHONPATH="$$(echo $$PREFIX/lib/python3*/site-packages)" &&
else ifneq ($(ENGINE),debian)
$(error ENGINE=$(ENGINE): use ENGINE=debian or ENGINE=7.17.1)
endif

test: setup
	$(WITH_ENGINE) $(PY) -m pytest -q -rs $(TESTS)

# The documentation site: docs/ and the API reference, warnings as errors, into docs/_build/html.
docs: setup
	$(PY) -m pip install --quiet -e '.[docs]'
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

# Workers as jobs of a single-node Slurm cluster on this machine (root; installs Debian's Slurm on first use).
test-slurm: setup
	$(WITH_ENGINE) eval "$$(tools/slurm_cluster.sh up)" && $(PY) -m pytest -q -rs tests/test_slurm.py; \
	status=$$?; tools/slurm_cluster.sh down; exit $$status

# Parsl's own test suite with parsl_wq as the executor, once per config.
parsl-suite: parsl-suite-no-shared-fs parsl-suite-shared-fs

parsl-suite-no-shared-fs: setup
	$(PARSL_SUITE) -k "$(PARSL_SUITE_SKIP_ALL) and $(PARSL_SUITE_SKIP_NO_SHARED_FS)" --config $(CURDIR)/tests/parsl_configs/local.py

parsl-suite-shared-fs: setup
	$(PARSL_SUITE) -k "$(PARSL_SUITE_SKIP_ALL)" --config $(CURDIR)/tests/parsl_configs/local_shared_fs.py

# Cold workers (coprocess=False), to compare with the default's (warm) run.
parsl-suite-cold: setup
	$(PARSL_SUITE) -k "$(PARSL_SUITE_SKIP_ALL) and $(PARSL_SUITE_SKIP_NO_SHARED_FS)" --config $(CURDIR)/tests/parsl_configs/local_cold.py

bench: setup
	$(WITH_ENGINE) $(PY) benchmarks/throughput.py
	$(WITH_ENGINE) $(PY) benchmarks/bundling.py
	$(WITH_ENGINE) $(PY) benchmarks/resources.py
	$(WITH_ENGINE) $(PY) benchmarks/pack.py
	$(WITH_ENGINE) $(PY) benchmarks/peaks.py
	$(WITH_ENGINE) $(PY) benchmarks/warm.py
	$(WITH_ENGINE) $(PY) benchmarks/chain_stages.py
	$(WITH_ENGINE) $(PY) benchmarks/large_data.py

clean:
	rm -rf $(VENV) runinfo .pytest_cache
