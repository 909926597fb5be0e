#!/usr/bin/env bash
# scripts/test.sh [PYTEST_ARGS...]  -- the one test command (`make test`).
#
#   1. scripts/test-deps.sh (system packages + .venv with '.[test]')
#   2. scripts/pcscd.sh start, unless a usable pcscd is already running;
#      a pcscd started here is stopped (by PID) when this script exits
#   3. .venv/bin/ruff check card digisign_web tests bench
#   4. .venv/bin/python -m pytest -ra PYTEST_ARGS...   (from the repo root)
#
# Exit code: pytest's; 5 (no tests collected) is reported as a failure; if
# pytest passed but ruff failed, 1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

echo "== test.sh: dependencies"
bash scripts/test-deps.sh

started_pcscd=0
cleanup() {
    if ((started_pcscd)); then
        bash scripts/pcscd.sh stop >/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== test.sh: pcscd"
if bash scripts/pcscd.sh status >/dev/null 2>&1; then
    echo "test.sh: using the pcscd that is already running"
else
    started_pcscd=1     # set first: an interrupted start is cleaned up too
    bash scripts/pcscd.sh start
fi

echo "== test.sh: ruff"
lint_paths=()
for d in card digisign_web tests bench; do
    [[ -d $d ]] && lint_paths+=("$d")
done
ruff_rc=0
.venv/bin/ruff check "${lint_paths[@]}" || ruff_rc=$?

echo "== test.sh: pytest"
pytest_rc=0
.venv/bin/python -m pytest -ra "$@" || pytest_rc=$?

if ((pytest_rc == 5)); then
    echo "test.sh: FAILED: pytest collected no tests (exit 5)" >&2
    exit 5
fi
if ((pytest_rc != 0)); then
    ((ruff_rc == 0)) || echo "test.sh: ruff check failed too (exit $ruff_rc)" >&2
    exit "$pytest_rc"
fi
if ((ruff_rc != 0)); then
    echo "test.sh: FAILED: ruff check failed (exit $ruff_rc); pytest passed" >&2
    exit 1
fi
