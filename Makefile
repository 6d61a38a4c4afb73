# The two commands in README: `make run` and `make test`. Each makes its own virtualenv.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test chaos check lint typecheck bench clean lock chromium redis-server screenshots

# Every machine installs exactly what requirements.lock pins (hashes checked), then
# Callhook itself without resolving anything again.
$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# After changing dependencies in pyproject.toml: pin them again (uv resolves, pip installs).
lock:
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet uv
	$(VENV)-lock/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --universal \
		--python-version 3.11 -o requirements.lock
	rm -rf $(VENV)-lock

run: $(STAMP)
	$(BIN)/callhook up

test: $(STAMP) chromium redis-server
	$(BIN)/pytest -q -m "not chaos" --durations=15

# The console's browser test drives Debian's chromium (Playwright's own browser download
# cannot be fetched everywhere): installed here when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the console's browser test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

# Tests start redis-server processes of their own (a server where none answers, the chaos
# suite's, primaries, replicas and sentinels: `redis-server --sentinel`, some over TLS with
# certificates made by `openssl`): Debian's redis-server and openssl, installed when missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 || { \
		echo "installing Debian's redis-server and openssl for the tests' own Redis processes"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -q redis-server openssl >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q redis-server openssl >/dev/null; }; }

# a PNG of every console page from the browser test's scenario, for docs/console.md
screenshots: $(STAMP) chromium
	CALLHOOK_SCREENSHOTS=docs/console $(BIN)/pytest -q tests/browser

# real processes broken on purpose (tests/chaos); figures in var/chaos/results.jsonl
chaos: $(STAMP) redis-server
	$(BIN)/pytest -q -m chaos tests/chaos

check: lint typecheck

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy callhook service workers tests

# both benchmarks, one after the other; each prints its figures
bench: bench-ingress bench-e2e

bench-ingress: $(STAMP)
	$(BIN)/python -m bench.ingress

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

.PHONY: bench-ingress bench-e2e bench-replicas
bench-e2e: $(STAMP)
	$(BIN)/python -m bench.e2e

# what [redis] replicas_ack costs the accept (a primary and a replica of its own)
bench-replicas: $(STAMP)
	$(BIN)/python -m bench.replicas_ack
