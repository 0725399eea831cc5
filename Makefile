# Two commands on a fresh machine: `make demo` runs the main job, `make test` the tests.
# Both bootstrap .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench-route boot-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,qiskit,cluster]"
	touch $(STAMP)

demo: $(STAMP)
	@mkdir -p out
	$(VENV)/bin/qpuos demo --out out

test: $(STAMP)
	$(PY) -m pytest -n 2 -q
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

bench-route: $(STAMP)
	@mkdir -p out
	$(VENV)/bin/qpuos bench route --json out/bench_route.json

# QEMU, Debian's python3.11 and a guest kernel for `qpuos boot` and its tests (root, apt)
boot-deps:
	bash scripts/ci_boot_deps.sh

clean:
	rm -rf $(VENV) out .cache .pytest_cache .mypy_cache .ruff_cache
