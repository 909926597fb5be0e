# digisign-web developer targets.
#   make demo   - install what the build needs (scripts/demo-deps.sh), then run the server with a virtual card
#                 (extra serve options: make demo ARGS='--port 8443')
#   make test   - the full test run (scripts/test.sh; extra pytest args: make test ARGS='-k foo')
#   make unit   - the Python-only lane: tests/unit without pcscd, Chromium or a server subprocess (< 60 s)
#   make lint   - ruff check
#   make bench  - the benchmark, not a test: ratios against floors measured in the same run, written to
#                 docs/benchmarks.md (make bench ARGS=--quick: fewer requests and an 8 MiB size limit)
#   make clean  - remove .venv, build output and caches

VENV       := .venv
LINT_PATHS := $(wildcard card digisign_web tests bench)
ARGS       ?=

.PHONY: demo test unit lint bench clean

# Needs no pcscd: apt packages only for pyscard's build (scripts/system-packages.sh; as non-root the one
# sudo line and a stop), then .venv (re)installed: a stale .venv would run old code.
demo:
	@bash scripts/demo-deps.sh
	exec $(VENV)/bin/digisign-web serve --virtual-card fineid-v4 --dialog web $(ARGS)

test:
	bash scripts/test.sh $(ARGS)

# No system services and no browser: the markers are applied in tests/conftest.py.
unit:
	@test -x $(VENV)/bin/pytest || bash scripts/venv.sh '.[test]'
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider -m "not pcscd and not browser and not process" tests/unit $(ARGS)

lint:
	@test -x $(VENV)/bin/ruff || bash scripts/venv.sh '.[test]'
	$(VENV)/bin/ruff check $(LINT_PATHS)

# pcscd (scripts/pcscd.sh start, which reuses a running one), vpcd and OpenSC serve the cold `list` row only;
# without them that row says why it was skipped. Installs nothing beyond .venv.
bench:
	@test -x $(VENV)/bin/python || bash scripts/venv.sh .
	BENCH_VIA_MAKE=1 $(VENV)/bin/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis .pcscd.log
	find . -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
