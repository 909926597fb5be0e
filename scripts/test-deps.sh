#!/usr/bin/env bash
# scripts/test-deps.sh
#
# Installs everything the test suite needs on a Debian 12 machine:
#   1. system packages (apt, only when something is missing; as root only -
#      as non-root it lists what is missing with the sudo command, exit 1);
#   2. .venv with the project installed non-editable with its test extras
#      (scripts/venv.sh '.[test]').
# Idempotent: a re-run with everything present does no apt work at all.
# Exit code: 0 ok, 1 missing packages (non-root) or a failed install.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

pkgs=(pcscd libpcsclite-dev vsmartcard-vpcd opensc xmlsec1 poppler-utils libnss3-tools
      openssl chromium gcc procps iproute2 make softhsm2 libp11-kit-dev)

if ! command -v python3 >/dev/null 2>&1; then
    pkgs+=(python3 python3-venv python3-dev)
else
    # `python3 -m venv --help` works without python3-venv on Debian (only
    # ensurepip lives there), so test ensurepip itself.
    python3 -c 'import ensurepip' >/dev/null 2>&1 || pkgs+=(python3-venv)
    # pyscard compiles a C extension: it needs Python.h.
    inc=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null || true)
    [[ -n $inc && -e $inc/Python.h ]] || pkgs+=(python3-dev)
fi

installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

missing=()
for p in "${pkgs[@]}"; do
    installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        echo "test-deps.sh: installing system packages: ${missing[*]}"
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        echo "test-deps.sh: ERROR: missing system packages: ${missing[*]}" >&2
        echo "test-deps.sh: install them with:" >&2
        echo "    sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
else
    echo "test-deps.sh: system packages present"
fi

bash scripts/venv.sh '.[test]'
