#!/bin/bash
# test-activation: the installed daemon is started on demand by the system bus (the activation
# file org.proxmox.FuseLoop1.service, run through dbus-daemon's setuid launch helper as root):
# with no owner of the name, "fuseloopctl list" as an unprivileged user starts it (checked: the
# owner runs the installed fuseloopd, as root, and is not a process of this test); this test then
# stops it with SIGTERM. "fuseloopctl list" as root starts it again, and with no mappings and no
# calls it exits by itself after its default idle timeout (30 s) and releases the name. The
# activated daemons use the default run directory; this test maps nothing there. If the test fails
# midway, its cleanup stops the daemon it made the bus start (by pid and start time).
# Needs "meson install" (prefix /usr); skipped without the activation file.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

[ -e "$FL_ACTIVATION_FILE" ] || skip "no $FL_ACTIVATION_FILE (meson install -C build)"
INSTALLED=$(fl_installed_daemon)
[ -x "$INSTALLED" ] || skip "the activation file names $INSTALLED, which is not installed"
grep -q '^User=root$' "$FL_ACTIVATION_FILE" || fail "$FL_ACTIVATION_FILE does not run the daemon as root"
DEFAULT_IDLE=30

make_test_user U
UID_U=$(id -u "$U")
# dbus-daemon's log, if tests/lib/services.sh started the bus daemon that serves now: it names
# who asked for the activation. The state directory is the one services.sh was given (tests/run.sh
# makes one per run); its pid record must name the very bus daemon, as the bus driver reports it.
SERVICES_STATE=${FUSELOOP_SERVICES_STATE:-/run/fuseloop-services}
DBUS_LOG=$SERVICES_STATE/dbus.log
DBUS_LOG_LINES=-1
BUS_PID=$(busctl_ call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
        GetConnectionUnixProcessID s org.freedesktop.DBus 2>/dev/null) || BUS_PID=
BUS_PID=${BUS_PID#u }
if [ -n "$BUS_PID" ] && [ -r "$SERVICES_STATE/dbus.pid" ] && [ -r "$DBUS_LOG" ] &&
        read -r REC_PID REC_START <"$SERVICES_STATE/dbus.pid" && [ "$REC_PID" = "$BUS_PID" ] &&
        [ "$(starttime "$BUS_PID" 2>/dev/null)" = "$REC_START" ]; then
        DBUS_LOG_LINES=$(wc -l <"$DBUS_LOG")
        log "bus daemon pid $BUS_PID logs to $DBUS_LOG"
else
        log "the bus daemon (pid ${BUS_PID:-unknown}) was not started by services.sh with state in $SERVICES_STATE; its log is not checked"
fi

# check_bus_log UID: if we have dbus-daemon's log, the last activation of the name that it logged
# was asked for by UID and went through the setuid launch helper.
check_bus_log() {
        local line

        [ "$DBUS_LOG_LINES" -ge 0 ] || return 0
        line=$(tail -n +"$((DBUS_LOG_LINES + 1))" "$DBUS_LOG" |
                grep "Activating service name='$FL_BUS'" | tail -n 1) || true
        [ -n "$line" ] || fail "$DBUS_LOG logs no activation of $FL_BUS"
        log "dbus-daemon: $line"
        assert_match "requested by '[^']*' \\(uid=$1 " "$line" "activation request in $DBUS_LOG"
        assert_contains "$line" "(using servicehelper)" "activation request in $DBUS_LOG"
}

# check_activated PID: PID owns the name, runs $INSTALLED as root with no options that change the
# run directory or the idle timeout, and is neither this shell nor one of its children.
check_activated() {
        local pid=$1 ppid cmdline

        [ -n "$pid" ] || fail "nobody owns $FL_BUS after the call"
        is_installed_daemon "$pid" ||
                fail "$FL_BUS is owned by pid $pid running $(readlink "/proc/$pid/exe"), not $INSTALLED"
        assert_eq "$INSTALLED" "$(readlink "/proc/$pid/exe")" "/proc/$pid/exe"
        assert_eq 0 "$(stat -c %u "/proc/$pid")" "uid of the activated fuseloopd"
        ppid=$(awk '{ print $4 }' "/proc/$pid/stat")
        [ "$ppid" != $$ ] || fail "the activated fuseloopd (pid $pid) is a child of this test"
        cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
        log "activated: pid $pid, parent $ppid ($(cat "/proc/$ppid/comm" 2>/dev/null)), command line: $cmdline"
        assert_no_match '--idle-timeout|--run-dir' "$cmdline" "command line of the activated fuseloopd"
}

no_owner || fail "$FL_BUS is owned (pid $(owner_pid)) before the test; it must be free for activation"

step "fuseloopctl list as an unprivileged user starts the installed daemon"
OUT=$(ctl_as "$U" list </dev/null 2>&1) || {
        tail -n 20 "$DBUS_LOG" 2>/dev/null
        fail "fuseloopctl list as $U failed: $OUT"
}
log "fuseloopctl list as $U:"$'\n'"$OUT"
PID=$(owner_pid)
[ -z "$PID" ] || adopt_activated_daemon "$PID"
check_activated "$PID"
check_bus_log "$UID_U"
assert_eq 'a(sossts) 0' "$(busctl_ call "$FL_BUS" "$FL_PATH" "$FL_IFACE" List)" "List() of the activated daemon"
step "this test started it, so it stops it: SIGTERM"
fl_end_process "$PID" 30 || fail "the activated fuseloopd (pid $PID) did not exit on SIGTERM"
forget_activated_daemon
wait_for 5 "release of $FL_BUS" no_owner

step "fuseloopctl list as root starts it again; it exits by itself when idle"
T=$(now_ms)
OUT=$(ctl list </dev/null 2>&1) || {
        tail -n 20 "$DBUS_LOG" 2>/dev/null
        fail "fuseloopctl list as root failed: $OUT"
}
PID2=$(owner_pid)
[ -z "$PID2" ] || adopt_activated_daemon "$PID2"
check_activated "$PID2"
check_bus_log 0
assert_ne "$PID" "$PID2" "pid of the second activated fuseloopd"
# No call to the daemon from here on: only the bus driver is asked who owns the name.
if ! wait_until $((2 * DEFAULT_IDLE + 15)) not_alive "$PID2"; then
        fail "the activated fuseloopd (pid $PID2) still runs $(($(now_ms) - T)) ms after the last call (idle timeout ${DEFAULT_IDLE}s)"
fi
ELAPSED=$(($(now_ms) - T))
forget_activated_daemon
log "the activated fuseloopd exited by itself ${ELAPSED} ms after the last call"
[ "$ELAPSED" -ge $(((DEFAULT_IDLE - 2) * 1000)) ] ||
        fail "the activated fuseloopd exited ${ELAPSED} ms after the last call, before its idle timeout of ${DEFAULT_IDLE}s"
wait_for 5 "release of $FL_BUS" no_owner
