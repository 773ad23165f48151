# make test: everything the tests need, then pytest (make test-fast: all but the whole-stack tests).
# make up / make down: the stack without Docker.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian packages the local servers come from (PostgreSQL, Redis, nginx with Lua): all that
# make up needs. The tests add the browser of tests/test_docs_browser.py (chromium: ~360 MB
# installed, ~20 s to install) and wrk (make bench, and its smoke test).
RUN_DEBS  := postgresql redis-server nginx libnginx-mod-http-lua
TEST_DEBS := $(RUN_DEBS) chromium wrk

.PHONY: test test-fast up down deps test-deps venv bench fuzz chaos clean

test: test-deps venv
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast loop: every test but those through a real nginx (markers: pytest.ini).
test-fast: test-deps venv
	$(PY) -m pytest -m "not stack" $(PYTEST_ARGS)

venv: $(STAMP)
$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# As root on Debian, install whatever is missing; elsewhere, say what is missing.
deps: DEBS = $(RUN_DEBS)
test-deps: DEBS = $(TEST_DEBS)
deps test-deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "missing Debian packages: $$missing (sudo apt-get install $$missing)"; exit 1; \
	fi

up: deps venv
	$(PY) tests/stack.py up

down:
	@if [ -x $(PY) ]; then $(PY) tests/stack.py down; else echo "nothing to stop"; fi

# Each layer against its ceiling, and the writes, on a throwaway stack (make test runs only a
# smoke of it: tests/test_bench_smoke.py).
bench: test-deps venv
	$(PY) tests/bench.py

# schemathesis against the served OpenAPI document, every check (FUZZ_EXAMPLES per operation).
fuzz: deps venv
	$(PY) tests/fuzz.py --max-examples $${FUZZ_EXAMPLES:-300}

# Mixed load through nginx while Redis, a worker and PostgreSQL fail; checks lost, doubled and
# stale writes and 5xx (never part of make test: its short version is tests/test_chaos.py).
chaos: deps venv
	$(PY) tests/chaos.py

clean: down
	rm -rf .stack $(VENV) .pytest_cache
