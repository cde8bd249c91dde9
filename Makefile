# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test test-fast lint bench bench-containers images clean

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/saga-verify demo

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test-fast: $(INSTALLED)
	$(BIN)/pytest -q

test: lint $(INSTALLED)
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

clean:
	rm -rf $(VENV) .saga-verify .hypothesis .pytest_cache .mypy_cache .ruff_cache
