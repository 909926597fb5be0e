# scripts/system-packages.sh - sourced (not run) by scripts/demo-deps.sh, scripts/test-deps.sh, scripts/venv.sh
#
# One list of Debian packages per purpose, and one way of getting them:
#   BUILD_PACKAGES     what building the project needs (`make demo`): pyscard is compiled from
#                      source (gcc, the PC/SC headers); plus python_packages below.
#   the test list      in scripts/test-deps.sh: BUILD_PACKAGES and what only the tests use.
#   python_packages    prints python3 / python3-venv / python3-dev (one a line) when python3 is
#                      missing, has no ensurepip, or has no Python.h (checked on the python3 itself,
#                      which need not be Debian's).
#   missing_packages   prints those of its arguments dpkg does not list as installed.
#   need_packages WHO PKG...
#                      installs the missing ones with apt-get as root; otherwise prints the one
#                      `sudo apt-get install` line and exits 1. Nothing missing: no apt work at all.
#
# DIGISIGN_APT_PACKAGES (space-separated), when set, replaces the list need_packages checks: for
# tests (a package that is surely not installed) and for trying another list by hand.

BUILD_PACKAGES=(gcc libpcsclite-dev)

python_packages() {
    if ! command -v python3 >/dev/null 2>&1; then
        printf '%s\n' python3 python3-venv python3-dev
        return
    fi
    # `python3 -m venv --help` works without python3-venv on Debian (only ensurepip lives there).
    python3 -c 'import ensurepip' >/dev/null 2>&1 || echo python3-venv
    local inc
    inc=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null || true)
    [[ -n $inc && -e $inc/Python.h ]] || echo python3-dev
}

missing_packages() {
    local p
    for p in "$@"; do
        [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || echo "$p"
    done
}

need_packages() {
    local who=$1
    shift
    local pkgs=("$@")
    if [[ -n ${DIGISIGN_APT_PACKAGES:-} ]]; then
        read -r -a pkgs <<<"$DIGISIGN_APT_PACKAGES"
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "$who: not Debian (no dpkg-query); make sure these, or your system's equivalents, are installed:" \
             "${pkgs[*]}" >&2
        return 0
    fi
    local missing
    mapfile -t missing < <(missing_packages "${pkgs[@]}")
    if ((${#missing[@]} == 0)); then
        echo "$who: system packages present"
    elif [[ $(id -u) -eq 0 ]]; then
        echo "$who: installing system packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        echo "$who: ERROR: missing system packages: ${missing[*]}. Install them, then run this again:" >&2
        echo "    sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
}
