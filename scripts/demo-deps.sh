#!/usr/bin/env bash
# scripts/demo-deps.sh - what `make demo` needs, on a Debian 12 machine:
#   1. the build's system packages (BUILD_PACKAGES and python_packages in scripts/system-packages.sh;
#      fewer than the tests': no pcscd, Chromium, xmlsec1 ...), with apt-get as root; as non-root it
#      prints the one `sudo apt-get install` line and exits 1;
#   2. .venv with the project installed (scripts/venv.sh .; a stale .venv would run old code).
# Idempotent: with everything present it does no apt work at all.
# Exit code: 0 ok, 1 missing packages (non-root) or a failed install.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/system-packages.sh
source scripts/system-packages.sh

mapfile -t python_pkgs < <(python_packages)
need_packages demo-deps.sh "${BUILD_PACKAGES[@]}" "${python_pkgs[@]}"
bash scripts/venv.sh .
