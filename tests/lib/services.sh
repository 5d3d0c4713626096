#!/usr/bin/env bash
# services.sh - start and stop the system services that fuseloopd and its
# tests talk to, on a Debian 12 machine whose PID 1 is not systemd (the
# project's copy of the recipe in shared/ci/services.sh; tests/run.sh uses it):
#
#   dbus     the D-Bus system bus (dbus-daemon --system, /run/dbus/system_bus_socket),
#            with bus activation through the setuid launch helper
#   polkitd  org.freedesktop.PolicyKit1 on that bus
#   udevd    systemd-udevd, so that libudev monitors with source "udev" get events
#   journald systemd-journald, so that a daemon run as under systemd (stderr a journal
#            stream) logs to a real journal
# Usage: services.sh install|start|stop|restart|status|reload|logs
#
#   install  install the service packages and the test-client packages
#   start    install missing service packages, then start each service that is
#            not already running; a running one is reused and left alone
#   stop     stop what "start" started (by recorded pid and start time), never
#            anything else
#   status   show each service, its pid and whether this script started it
#   reload   make dbus-daemon re-read its configuration (after installing a bus
#            policy file) and udevd its rules
#   logs     print the tail of each log this script wrote
#
# Environment:
#   FUSELOOP_SERVICES_STATE=DIR   pid records, logs and lock (default /run/fuseloop-services)
#   FUSELOOP_SERVICES_COLDPLUG=0  do not replay "add" events for block/misc devices
#                                 after starting udevd (default 1)
#   FUSELOOP_SERVICES_NO_INSTALL=1  never call apt-get; fail if a package is missing
#
# Idempotent: running "start" twice starts nothing the second time; "stop" after
# "stop" does nothing.
set -euo pipefail
# shellcheck source=proc.sh
. "$(dirname "${BASH_SOURCE[0]}")/proc.sh"
set +m

STATE=${FUSELOOP_SERVICES_STATE:-/run/fuseloop-services}
BUS_SOCKET=/run/dbus/system_bus_socket
# All checks below go to the standard system bus, whatever the caller exported.
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$BUS_SOCKET

SERVICE_PKGS=(dbus polkitd udev systemd util-linux)
CLIENT_PKGS=(python3-gi gir1.2-glib-2.0 python3-dbus)

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- packages --

missing_pkgs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || printf '%s\n' "$p"
    done
}

install_pkgs() {
    local missing i
    missing=$(missing_pkgs "$@" | tr '\n' ' ')
    [ -n "$missing" ] || return 0
    [ "${FUSELOOP_SERVICES_NO_INSTALL:-0}" != 1 ] || die "missing packages: $missing"
    log "installing: $missing"
    # apt-get update takes the lists lock without waiting: retry while another
    # apt run holds it.
    for i in 1 2 3 4 5 6 7 8 9 10; do
        apt-get update -q -o DPkg::Lock::Timeout=300 >"$STATE/apt.log" 2>&1 && break
        [ "$i" -lt 10 ] || { cat "$STATE/apt.log" >&2; die "apt-get update failed"; }
        sleep 10
    done
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=600 $missing >>"$STATE/apt.log" 2>&1 ||
        { tail -n 30 "$STATE/apt.log" >&2; die "apt-get install failed"; }
}

# --------------------------------------------------------- process records --

# Records a started process by pid and start time (starttime(), proc.sh), which
# together name one process even if pids are reused.
record() { # name pid
    printf '%s %s\n' "$2" "$(starttime "$2")" >"$STATE/$1.pid"
}

# Print the pid of the process recorded for NAME if that very process still runs.
recorded_alive() {
    local pid st
    [ -r "$STATE/$1.pid" ] || return 1
    read -r pid st <"$STATE/$1.pid" || return 1
    [ -n "$pid" ] && [ "$(starttime "$pid" 2>/dev/null)" = "$st" ] || return 1
    printf '%s\n' "$pid"
}

# A daemon started with "setsid cmd &" from this non-interactive script keeps
# the pid that $! reports; refuse to record anything else.
check_comm() { # pid expected-comm
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] ||
        die "pid $1 is not $2 (got '$(cat "/proc/$1/comm" 2>/dev/null)'); not recording it"
}

# launch NAME READY -- COMMAND...: start COMMAND detached, logging to $STATE/NAME.log, and
# wait up to 10 s for READY (a command line, split into words) to succeed. On a time-out it
# ends what it started, shows the log's tail and dies. Sets pid to the started process.
launch() {
    local name=$1 ready=$2
    shift 3
    setsid "$@" </dev/null >>"$STATE/$name.log" 2>&1 9>&- &
    pid=$!
    # shellcheck disable=SC2086 # READY is a command line
    if ! wait_until 10 $ready; then
        alive "$pid" && kill "$pid"
        tail -n 20 "$STATE/$name.log" >&2
        die "$name did not come up"
    fi
}

# -------------------------------------------------------------------- bus --

bus_ok() {
    busctl --system --timeout=2 call org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus GetId >/dev/null 2>&1
}

start_dbus() {
    local pid
    if bus_ok; then
        if pid=$(recorded_alive dbus); then log "dbus: running (pid $pid, started here)"
        else log "dbus: reusing the running system bus"; fi
        return 0
    fi
    getent passwd messagebus >/dev/null || die "user messagebus is missing (package dbus-system-bus-common)"
    mkdir -p /run/dbus
    dbus-uuidgen --ensure
    # --nofork: $! is the daemon; --nopidfile: no stale /run/dbus/pid after a
    # kill; --nosyslog: there is no syslog here, so activation, denials and the
    # output of bus-activated services go to our log.
    # SYSTEMD_NSS_BYPASS_BUS: keep libnss-systemd from calling the bus that is
    # starting (as Debian's init script does).
    launch dbus bus_ok -- env SYSTEMD_NSS_BYPASS_BUS=1 \
        dbus-daemon --system --nofork --nopidfile --nosyslog
    check_comm "$pid" dbus-daemon
    record dbus "$pid"
    log "dbus: started (pid $pid), $BUS_SOCKET"
}

stop_dbus() {
    local pid peers p left
    if ! pid=$(recorded_alive dbus); then
        rm -f "$STATE/dbus.pid"
        bus_ok && log "dbus: not started here, left running"
        return 0
    fi
    # Bus-activated services (the daemon under test among them) exit when the
    # bus goes away; note who was connected so that stragglers get reported.
    peers=$(busctl --system list --no-legend 2>/dev/null |
            awk -v me="$pid" '$2 ~ /^[0-9]+$/ && $2 != me {print $2}' | sort -u) || true
    stop_pid dbus "$pid"
    others_gone() { local q; for q in $peers; do alive "$q" && return 1; done; return 0; }
    if ! wait_until 5 others_gone; then
        left=""
        for p in $peers; do alive "$p" && left="$left $p"; done
        log "dbus: still running after the bus stopped (not started here, left alone):$left"
    fi
    # dbus-daemon runs as messagebus and cannot unlink its root-owned socket.
    bus_ok || rm -f "$BUS_SOCKET"
}

# --------------------------------------------------------------- polkitd --

polkitd_exe() {
    local exe
    exe=$(sed -n 's/^Exec=\([^ ]*\).*/\1/p' \
          /usr/share/dbus-1/system-services/org.freedesktop.PolicyKit1.service 2>/dev/null)
    printf '%s\n' "${exe:-/usr/lib/polkit-1/polkitd}"
}

start_polkitd() {
    local pid exe owner
    if has_owner org.freedesktop.PolicyKit1; then
        owner=$(owner_pid org.freedesktop.PolicyKit1)
        if pid=$(recorded_alive polkitd); then log "polkitd: running (pid $pid, started here)"
        else log "polkitd: reusing the running one (pid $owner)"; fi
        return 0
    fi
    getent passwd polkitd >/dev/null || die "user polkitd is missing (package polkitd)"
    exe=$(polkitd_exe)
    [ -x "$exe" ] || die "$exe not found (package polkitd)"
    # Without --no-debug polkitd logs rule loading and errors to stderr. It
    # starts as root and switches itself to the polkitd user, keeping its pid.
    launch polkitd "has_owner org.freedesktop.PolicyKit1" -- "$exe"
    owner=$(owner_pid org.freedesktop.PolicyKit1)
    if [ "$owner" != "$pid" ]; then
        # Lost a race with bus activation: keep the activated one, end ours.
        alive "$pid" && kill "$pid"
        log "polkitd: reusing the bus-activated one (pid $owner)"
        return 0
    fi
    check_comm "$pid" polkitd
    record polkitd "$pid"
    log "polkitd: started (pid $pid)"
}

# ----------------------------------------------------------------- udevd --

udevd_ok() { udevadm control --ping --timeout=2 >/dev/null 2>&1; }

udevd_exe() {
    local e
    for e in /lib/systemd/systemd-udevd /usr/lib/systemd/systemd-udevd; do
        [ -x "$e" ] && { printf '%s\n' "$e"; return 0; }
    done
    return 1
}

start_udevd() {
    local pid exe
    if udevd_ok; then
        if pid=$(recorded_alive udevd); then log "udevd: running (pid $pid, started here)"
        else log "udevd: reusing the running one"; fi
        return 0
    fi
    # A second udevd would take over the control socket of the first: never
    # start one beside a udevd that merely does not answer.
    if pgrep -x systemd-udevd >/dev/null; then
        die "a systemd-udevd runs but does not answer 'udevadm control --ping'; not starting another"
    fi
    exe=$(udevd_exe) || die "systemd-udevd not found (package udev)"
    mkdir -p /run/udev
    launch udevd udevd_ok -- "$exe"
    check_comm "$pid" systemd-udevd
    record udevd "$pid"
    log "udevd: started (pid $pid)"
    if [ "${FUSELOOP_SERVICES_COLDPLUG:-1}" = 1 ]; then
        # What systemd-udev-trigger does at boot, for the devices we use: gives
        # existing loop nodes their group and fills the udev database.
        udevadm trigger --action=add --subsystem-match=block --subsystem-match=misc || true
        udevadm settle --timeout=30 || log "udevd: settle timed out"
    fi
}

# -------------------------------------------------------------- journald --

# Answers a "synchronize" request over its varlink socket only if it runs.
journald_ok() { journalctl --sync >/dev/null 2>&1; }

start_journald() {
    local pid exe=/lib/systemd/systemd-journald
    if journald_ok; then
        if pid=$(recorded_alive journald); then log "journald: running (pid $pid, started here)"
        else log "journald: reusing the running one"; fi
        return 0
    fi
    [ -x "$exe" ] || exe=/usr/lib/systemd/systemd-journald
    [ -x "$exe" ] || die "systemd-journald not found (package systemd)"
    # Without systemd as PID 1 it makes its sockets in /run/systemd/journal itself and keeps
    # the journal in /run/log/journal (volatile).
    launch journald journald_ok -- "$exe"
    check_comm "$pid" systemd-journal
    record journald "$pid"
    log "journald: started (pid $pid)"
}

# ------------------------------------------------------------------ stop --

stop_pid() { # name pid
    local n=100
    kill -TERM "$2" 2>/dev/null || true
    while alive "$2" && [ "$n" -gt 0 ]; do sleep 0.1; n=$(( n - 1 )); done
    if alive "$2"; then
        log "$1: pid $2 ignored SIGTERM for 10 s, sending SIGKILL"
        kill -KILL "$2" 2>/dev/null || true
        wait_until 5 eval "! alive $2" || log "$1: pid $2 still there"
    fi
    rm -f "$STATE/$1.pid"
    log "$1: stopped (pid $2)"
}

stop_simple() { # name
    local pid
    if pid=$(recorded_alive "$1"); then stop_pid "$1" "$pid"
    else rm -f "$STATE/$1.pid"; log "$1: not started here, nothing to stop"; fi
}

# ---------------------------------------------------------------- status --

status() {
    local pid note
    if pid=$(recorded_alive dbus); then note="started here, pid $pid"
    elif bus_ok; then note="running, not started here"
    else note="not running"; fi
    printf 'dbus:    %s\n' "$note"
    if pid=$(recorded_alive polkitd); then note="started here, pid $pid"
    elif has_owner org.freedesktop.PolicyKit1; then
        note="running, not started here (pid $(owner_pid org.freedesktop.PolicyKit1))"
    else note="not running"; fi
    printf 'polkitd: %s\n' "$note"
    if pid=$(recorded_alive udevd); then note="started here, pid $pid"
    elif udevd_ok; then note="running, not started here"
    else note="not running"; fi
    printf 'udevd:   %s\n' "$note"
    if pid=$(recorded_alive journald); then note="started here, pid $pid"
    elif journald_ok; then note="running, not started here"
    else note="not running"; fi
    printf 'journald: %s\n' "$note"
    printf 'logs:    %s/{dbus,polkitd,udevd,journald}.log\n' "$STATE"
}

logs() {
    local f
    for f in dbus polkitd udevd journald; do
        [ -s "$STATE/$f.log" ] || continue
        printf -- '--- %s/%s.log\n' "$STATE" "$f"
        tail -n 50 "$STATE/$f.log"
    done
}

# ------------------------------------------------------------------ main --

[ "$(id -u)" = 0 ] || die "run as root"
cmd=${1:-}
case "$cmd" in
    install|start|stop|restart|status|reload|logs) ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
mkdir -p "$STATE"
# fd 9 holds the lock; every daemon is started with 9>&- so that none keeps it.
exec 9>"$STATE/lock"
flock -w 300 9 || die "another services.sh holds $STATE/lock"

case "$cmd" in
    install)
        install_pkgs "${SERVICE_PKGS[@]}" "${CLIENT_PKGS[@]}" ;;
    start)
        install_pkgs "${SERVICE_PKGS[@]}"
        start_dbus; start_polkitd; start_udevd; start_journald ;;
    stop)
        stop_simple polkitd; stop_dbus; stop_simple udevd; stop_simple journald ;;
    restart)
        stop_simple polkitd; stop_dbus; stop_simple udevd; stop_simple journald
        install_pkgs "${SERVICE_PKGS[@]}"
        start_dbus; start_polkitd; start_udevd; start_journald ;;
    status)
        status ;;
    reload)
        bus_ok && busctl --system call org.freedesktop.DBus /org/freedesktop/DBus \
            org.freedesktop.DBus ReloadConfig
        udevd_ok && udevadm control --reload
        log "reloaded" ;;
    logs)
        logs ;;
esac
