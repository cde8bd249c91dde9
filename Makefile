# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

#: Where `make demo` writes its HTML report.
DEMO_REPORT ?= .saga-verify/demo-report

.PHONY: demo test test-fast lint browser bench bench-containers images report-screenshot clean

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/saga-verify demo --html $(DEMO_REPORT)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test-fast: $(INSTALLED)
	$(BIN)/pytest -q

# Debian's chromium, for the test that opens the HTML report in a real browser.
browser:
	fixtures/browser/install-chromium.sh

test: lint $(INSTALLED) browser
	$(BIN)/pytest -q -n 2
	$(BIN)/pytest -q -m slow -n 2

bench: $(INSTALLED)
	$(BIN)/python bench/run.py

# Container start and plans/s against containers; needs a Docker engine (add ARGS=--cold to
# time building the images from nothing).
bench-containers: $(INSTALLED)
	$(BIN)/python bench/containers.py $(ARGS)

# The services image (saga_verify.containers), built without a registry; needs a Docker engine
# (fixtures/containers/docker-engine.sh start).
images: $(INSTALLED)
	$(BIN)/python -c 'from saga_verify.containers import ensure_service_image as e; i = e(); print(i.tag, i.id, "built" if i.built else "reused", f"in {i.seconds:.1f} s")'

# The README's picture of a report: the demo's report of one broken variant, down to its diagram.
report-screenshot: $(INSTALLED) browser
	$(BIN)/saga-verify demo --html .saga-verify/screenshot --report-dir .saga-verify/screenshot/plans >/dev/null
	$(BIN)/python tests/reporting/headless_chromium.py .saga-verify/screenshot/report.html docs/report.png \
		--width 1180 --selector 'section[data-saga="refund_forgets_charge"]' --until 'section.failure .diagram'

clean:
	rm -rf $(VENV) .saga-verify .hypothesis .pytest_cache .mypy_cache .ruff_cache
