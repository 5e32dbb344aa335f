# Thin targets; the work lives in Python (tools/) and the lock files.
# A newcomer needs only `make demo` and `make test`: both install what is missing first.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := $(PYTHON) -m uv
VENV := .venv
RUN := $(UV) run --frozen --all-packages
BUILD := build
FIXTURES := $(BUILD)/fixtures
PYTEST_ARGS ?=
MEMBERS := shared loader_module inference_module tools

.PHONY: install test test-fast demo up bench bench-quick bench-fleet lint typecheck fmt fixtures browser clean images compose-test images-arm64-smoke

install: $(VENV)/.synced node_modules/.synced

# uv is installed with pip when missing; the environment is created from the committed lock.
$(VENV)/.synced: uv.lock pyproject.toml shared/pyproject.toml loader_module/pyproject.toml inference_module/pyproject.toml tools/pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --all-packages
	@touch $@

node_modules/.synced: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

fixtures: install
	$(RUN) python -m edge_tools.fixtures --out $(FIXTURES)

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports
	@# Each workspace member declares what it imports (its pyproject.toml's [tool.deptry] names the exceptions).
	@for member in $(MEMBERS); do (cd $$member && $(RUN) deptry src) || exit 1; done

typecheck: install
	$(RUN) mypy shared/src loader_module/src inference_module/src tools/src tests

fmt: install
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

# Debian's chromium for the web-page browser test (playwright drives it; no browser download).
# Idempotent; when it cannot be installed (not root, no apt) the test skips and says why.
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null; } \
		|| echo "make browser: could not install chromium; the browser test will be skipped" >&2

# The whole suite, as CI runs it: lint and types first, then every test, with the coverage figure
# (in-process; `fail_under` in pyproject.toml is the floor).
test: lint typecheck fixtures browser
	$(RUN) pytest --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

# The edit-test loop: unit tests only (no child processes, no reliability suite), on two workers.
test-fast: install fixtures
	$(RUN) pytest -q -m "not integration and not slow" --ignore=tests/reliability -n 2 $(PYTEST_ARGS)

demo: fixtures
	$(RUN) python -m edge_tools.stack demo

up: fixtures
	$(RUN) python -m edge_tools.stack up

# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (set on some processors for old OpenBLAS builds) slow a current
# numpy: unset for the benchmark process alone, never for tests.
BENCH := env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(RUN) python -m edge_tools.bench

bench: fixtures
	$(BENCH) --out docs/benchmarks.md

bench-quick: fixtures
	$(BENCH) --quick

# Fleet rollout through layered deployments: 10, 50 and 100 simulated devices, a real loader each (minutes).
bench-fleet: fixtures
	$(BENCH) --only fleet --out docs/benchmarks-fleet.md

# Container images: podman (installed from Debian when missing) or Docker; on local Debian-built bases
# where no image registry answers. IMAGES_ARGS=--official-base builds on the Dockerfiles' registry bases.
IMAGES_ARGS ?=
images: install
	$(RUN) python -m edge_tools.images build $(IMAGES_ARGS)

# docker-compose.test.yml end to end with the built images, torn down afterwards (also on failure).
compose-test: images fixtures
	$(RUN) python -m edge_tools.images compose-test

# The inference image for linux/arm64 under QEMU user emulation, serving an ONNX and a TFLite model
# (slow: emulated builds; docs/operations.md records the last run).
images-arm64-smoke: fixtures
	$(RUN) python -m edge_tools.images arm64-smoke

clean:
	rm -rf $(BUILD) .pytest_cache .mypy_cache .ruff_cache .hypothesis
