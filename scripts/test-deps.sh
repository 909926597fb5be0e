#!/usr/bin/env bash
# scripts/test-deps.sh
#
# Installs everything the test suite needs on a Debian 12 machine:
#   1. system packages: BUILD_PACKAGES (scripts/system-packages.sh, what
#      `make demo` needs too) and the test-only ones below (apt, only when
#      something is missing; as root only - as non-root it prints the one
#      sudo command, exit 1);
#   2. .venv with the project installed non-editable with its test extras
#      (scripts/venv.sh '.[test]').
# Idempotent: a re-run with everything present does no apt work at all.
# Exit code: 0 ok, 1 missing packages (non-root) or a failed install.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/system-packages.sh
source scripts/system-packages.sh

# curl, iproute2: tests/integration/test_listen.py (a network namespace, curl from inside it).
pkgs=("${BUILD_PACKAGES[@]}" pcscd vsmartcard-vpcd opensc xmlsec1 poppler-utils libnss3-tools
      openssl chromium procps iproute2 curl make softhsm2 libp11-kit-dev
      git dbus-daemon libglib2.0-bin systemd util-linux)
# git: make demo from a clean clone; dbus-daemon: the logind stand-in of the screen-lock tests; libglib2.0-bin
# (gio) and systemd (systemd-analyze): the autostart entry and the user unit checked by their real parsers

mapfile -t python_pkgs < <(python_packages)
need_packages test-deps.sh "${pkgs[@]}" "${python_pkgs[@]}"

bash scripts/venv.sh '.[test]'
