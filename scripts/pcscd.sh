#!/usr/bin/env bash
# scripts/pcscd.sh start|stop|status
#
# Runs a pcscd for the tests: `pcscd --foreground` in the background (never
# --auto-exit), PID in .pcscd.pid and log in .pcscd.log at the repo root.
# "Usable" means: /run/pcscd/pcscd.comm exists AND the vpcd driver
# (vsmartcard-vpcd) is listening on TCP port 35963 (see vpcd_port_open).
#
#   start   if a usable pcscd is already running, reuse it (no pid file written);
#           otherwise start one (root only) and wait (<= 10 s) until usable.
#           Exit 0 usable, 1 failure (the log is printed).
#   stop    SIGTERM the PID in .pcscd.pid and wait until it is gone (<= 10 s,
#           then SIGKILL and wait); remove the pid file. A pcscd that this
#           script did not start is never touched. Exit 0, or 1 if it won't die.
#   status  report; exit 0 usable, 1 running but not usable, 3 not running.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIDFILE=$ROOT/.pcscd.pid
LOGFILE=$ROOT/.pcscd.log
COMM=/run/pcscd/pcscd.comm
DAEMON_PIDFILE=/run/pcscd/pcscd.pid
VPCD_PORT=35963
TIMEOUT_S=10

log() { echo "pcscd.sh: $*"; }
err() { echo "pcscd.sh: ERROR: $*" >&2; }

# True if PID exists and is not a zombie (a zombie's PID still answers
# kill -0, and our PID 1 might not reap it). /proc also answers for a
# non-root caller asking about root's pcscd, where kill -0 gets EPERM.
alive() {
    local pid=$1 stat
    kill -0 "$pid" 2>/dev/null || [[ -e /proc/$pid ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }           # fields after "(comm) "
    [[ ${stat%% *} != Z ]]
}

is_pcscd() { [[ $(cat "/proc/$1/comm" 2>/dev/null) == pcscd ]]; }

# Is something LISTENing on the vpcd port (any local address)? This reads
# /proc/net/tcp{,6} instead of connecting: vpcd listens with a backlog of 0
# and accepts only about once a second, so a probe connection fills its accept
# queue (a second probe then hangs) and delays the virtual card's own connect;
# vpcd also treats each accepted probe as a card that vanished.
vpcd_port_open() {
    local hex
    printf -v hex '%04X' "$VPCD_PORT"
    grep -qE "^ *[0-9]+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

usable() { [[ -S $COMM ]] && vpcd_port_open; }

# The PID in .pcscd.pid if it is a live pcscd, else nothing.
our_pid() {
    local pid
    [[ -f $PIDFILE ]] || return 1
    pid=$(tr -dc 0-9 <"$PIDFILE")
    [[ -n $pid ]] && alive "$pid" && is_pcscd "$pid" && echo "$pid"
}

# Live (non-zombie) pcscd PIDs, space separated. Zombies are skipped: where
# PID 1 does not reap orphans, a stopped pcscd stays <defunct> for good.
other_pids() {
    local pid out=()
    for pid in $(pgrep -x pcscd || true); do
        alive "$pid" && out+=("$pid")
    done
    echo "${out[*]}"
}

now_ms() { local t=${EPOCHREALTIME//[^0-9]/}; echo $((10#$t / 1000)); }

# wait_gone PID SECONDS -> 0 once PID is gone, 1 on timeout
wait_gone() {
    local pid=$1 deadline=$(($(now_ms) + $2 * 1000))
    while alive "$pid"; do
        (($(now_ms) >= deadline)) && return 1
        sleep 0.05
    done
}

print_log() {
    if [[ -s $LOGFILE ]]; then
        echo "----- $LOGFILE (last 50 lines) -----" >&2
        tail -n 50 "$LOGFILE" >&2
        echo "-----" >&2
    fi
}

cmd_start() {
    local pid others
    if usable; then
        log "reusing the already running pcscd (pid $(other_pids)): $COMM and vpcd port $VPCD_PORT listening"
        return 0
    fi

    if pid=$(our_pid); then
        log "pcscd pid $pid from $PIDFILE is running but not usable yet; waiting for it"
    else
        rm -f "$PIDFILE"
        others=$(other_pids)
        if [[ -n $others ]]; then
            err "a pcscd not started by this script is running (pid $others) but is not usable" \
                "($COMM present: $([[ -S $COMM ]] && echo yes || echo no);" \
                "vpcd port $VPCD_PORT: not listening). Is vsmartcard-vpcd installed, was it" \
                "started with --auto-exit? Stop it (e.g. 'systemctl stop pcscd.socket pcscd' or" \
                "'kill $others') and retry."
            return 1
        fi
        if [[ $(id -u) -ne 0 ]]; then
            err "pcscd must be started as root: sudo $0 start"
            return 1
        fi
        command -v pcscd >/dev/null 2>&1 \
            || { err "pcscd not installed (run scripts/test-deps.sh as root)"; return 1; }

        # cd on its own line: `cd X && cmd &` would background the whole list
        # and $! would be the subshell's PID, not pcscd's.
        cd "$ROOT"
        pcscd --foreground </dev/null >"$LOGFILE" 2>&1 &
        pid=$!
        echo "$pid" >"$PIDFILE"
        log "started pcscd pid $pid (log: $LOGFILE)"
    fi

    local deadline=$(($(now_ms) + TIMEOUT_S * 1000))
    while :; do
        if ! alive "$pid"; then
            err "pcscd pid $pid died during startup"
            print_log
            rm -f "$PIDFILE"
            return 1
        fi
        if usable; then
            log "pcscd pid $pid ready: $COMM and vpcd port $VPCD_PORT listening"
            return 0
        fi
        if (($(now_ms) >= deadline)); then
            err "pcscd pid $pid not usable after ${TIMEOUT_S}s" \
                "($COMM present: $([[ -S $COMM ]] && echo yes || echo no);" \
                "vpcd port $VPCD_PORT not listening - is vsmartcard-vpcd installed?)"
            print_log
            cmd_stop >&2 || true
            return 1
        fi
        sleep 0.05
    done
}

cmd_stop() {
    local pid
    if [[ ! -f $PIDFILE ]]; then
        log "no $PIDFILE: nothing to stop (a pcscd not started by this script is left alone)"
        return 0
    fi
    if ! pid=$(our_pid); then
        log "pcscd from $PIDFILE ($(tr -dc 0-9 <"$PIDFILE")) is not running; removing the stale pid file"
        rm -f "$PIDFILE"
        return 0
    fi
    if ! kill -TERM "$pid" 2>/dev/null && alive "$pid"; then
        err "cannot signal pcscd pid $pid (not root? try: sudo $0 stop)"
        return 1
    fi
    if ! wait_gone "$pid" "$TIMEOUT_S"; then
        err "pcscd pid $pid still alive ${TIMEOUT_S}s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" "$TIMEOUT_S"; then
            err "pcscd pid $pid survived SIGKILL"
            return 1
        fi
        # A killed pcscd leaves its own pid file behind; a new pcscd checks it.
        if [[ -f $DAEMON_PIDFILE && $(tr -dc 0-9 <"$DAEMON_PIDFILE") == "$pid" ]]; then
            rm -f "$DAEMON_PIDFILE"
        fi
    fi
    rm -f "$PIDFILE"
    log "stopped pcscd pid $pid"
}

cmd_status() {
    local pid others
    others=$(other_pids)
    if pid=$(our_pid); then
        log "pcscd pid $pid (from $PIDFILE) running"
    elif [[ -f $PIDFILE ]]; then
        log "stale $PIDFILE (pid $(tr -dc 0-9 <"$PIDFILE") not running)"
    fi
    if [[ -z $others ]]; then
        log "no pcscd running"
        return 3
    fi
    log "running pcscd pid(s): $others"
    log "$COMM: $([[ -S $COMM ]] && echo present || echo absent)"
    if vpcd_port_open; then log "vpcd port $VPCD_PORT: listening"
    else log "vpcd port $VPCD_PORT: not listening"; fi
    if usable; then log "usable"; return 0; fi
    log "NOT usable"
    return 1
}

case ${1:-} in
    start)  cmd_start ;;
    stop)   cmd_stop ;;
    status) cmd_status ;;
    *)      echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
