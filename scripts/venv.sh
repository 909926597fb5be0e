#!/usr/bin/env bash
# scripts/venv.sh [PIP_SPEC]
#
# Creates the project virtualenv .venv (if absent) and installs the project
# into it, non-editable: `.venv/bin/pip install PIP_SPEC` (default ".").
# Used by `make demo` (spec ".") and scripts/test-deps.sh (spec ".[test]").
#
# Needs only python3 (>= 3.11) with venv/ensurepip, and - because pyscard is
# built from source - gcc, the Python headers and libpcsclite-dev: the list in
# scripts/system-packages.sh, which scripts/demo-deps.sh and test-deps.sh
# install. It needs no pcscd and no other system package.
# pip is the one ensurepip brings (not upgraded: a download and ~4 s for nothing
# the install needs); pip's cache is used, so a second clone builds no pyscard.
# Exit code: 0 ok, 1 on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

SPEC=${1:-.}
VENV=.venv
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

die() { echo "venv.sh: ERROR: $*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 \
    || die "python3 not found (Debian: sudo apt-get install python3 python3-venv python3-dev)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$(python3 -V 2>&1) is too old: digisign-web needs Python 3.11 or newer (Debian 12)"

# shellcheck source=scripts/system-packages.sh
source scripts/system-packages.sh

build_hint() {
    command -v dpkg-query >/dev/null 2>&1 || return 0  # not Debian: pip's own error must do
    local missing
    mapfile -t missing < <(missing_packages "${BUILD_PACKAGES[@]}"; python_packages)
    if ((${#missing[@]})); then
        echo "venv.sh: pyscard is built from source and needs: ${missing[*]}" >&2
        echo "venv.sh:   sudo apt-get install --no-install-recommends ${missing[*]}" >&2
        return 1
    fi
}

# A venv whose interpreter no longer runs (python upgraded or moved) is rebuilt.
if [[ -e $VENV/bin/python ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "venv.sh: $VENV is broken (its python does not run); recreating it"
    rm -rf "$VENV"
fi

if [[ ! -x $VENV/bin/python ]]; then
    python3 -c 'import ensurepip' >/dev/null 2>&1 \
        || die "python3 cannot create virtualenvs (no ensurepip); Debian: sudo apt-get install python3-venv"
    echo "venv.sh: creating $VENV with $(python3 -V 2>&1)"
    python3 -m venv "$VENV"
fi

# Warn early (pyscard may still come as a wheel, so this is not fatal yet).
hint_ok=1
build_hint || hint_ok=0

echo "venv.sh: $VENV/bin/pip install '$SPEC'"
if ! "$VENV/bin/pip" install --quiet "$SPEC"; then
    ((hint_ok)) || echo "venv.sh: (see the missing build packages above)" >&2
    die "pip install '$SPEC' failed"
fi
