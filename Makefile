# Two commands do all set-up on a fresh machine:
#   make run    create .venv if needed, install the project (pinned requirements) editable, start the dashboard
#   make test   the same set-up (plus Debian's chromium for the browser test), then the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -c1-12)
PORT ?= 8501
# Closed by default: the dashboard listens on this machine only (AW_HOST=0.0.0.0 opens it to the network).
AW_HOST ?= 127.0.0.1

# Training processes get MALLOC_MMAP_THRESHOLD_ from the job runner (it halves inference speed, so not here);
# OpenMP threads that sleep instead of spinning keep 2-core machines responsive.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup run test test-real lint browser benchmark

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/python app.py --server.address $(AW_HOST) --server.port $(PORT) --server.headless true \
	  --browser.gatherUsageStats false

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium: the browser test will be skipped"; \
	  else echo "chromium not installed (needs root: apt-get install chromium): the browser test will be skipped"; fi; }

test: setup browser
	$(PY) -m pytest

# Only the tests that need ../shared's real data (MVTec grid, weights); they skip with a reason without it.
test-real: setup
	$(PY) -m pytest -m real_data

# Style (ruff) and the layering of core/ (import-linter contracts in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

benchmark: setup
	MALLOC_MMAP_THRESHOLD_=131072 $(PY) benchmarks/mvtec_benchmark.py
