#!/bin/bash
# test-bus-reconnect: the daemon keeps serving its mappings while the system bus is gone and
# reconnects when it is back. The shared system bus is never touched: the test runs a private
# dbus-daemon of its own (a system-type bus on $FL_TMP/bus with the project's bus policy) and
# points the daemon and every client at it with DBUS_SYSTEM_BUS_ADDRESS. With an ext4 image
# mapped and mounted, it kills that bus (SIGKILL, as in a crash, leaving the socket file
# behind), reads every file back through the daemon (page cache dropped), starts the bus again
# at the same address, waits until the daemon owns its name there again, and then lists, maps,
# unmaps and stops as usual.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

command -v dbus-daemon >/dev/null || skip "dbus-daemon is not installed"
BUS_POLICY=$FUSELOOP_SRC/dbus/org.proxmox.FuseLoop1.conf
[ -r "$BUS_POLICY" ] || skip "no bus policy at $BUS_POLICY"

BUS_SOCKET=$FL_TMP/bus
BUS_CONF=$FL_TMP/bus.conf
BUS_LOG=$FL_TMP/dbus-daemon.log
BUS_PID=
SHARED_BUS=unix:path=/run/dbus/system_bus_socket

# A system bus like Debian's system.conf (method calls denied unless a policy allows them),
# without a user switch, pidfile, syslog or activation, plus fuseloopd's own policy.
cat >"$BUS_CONF" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$BUS_SOCKET</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include ignore_missing="no">$BUS_POLICY</include>
</busconfig>
EOF

bus_ok() {
        busctl --system --timeout=2 call org.freedesktop.DBus /org/freedesktop/DBus \
                org.freedesktop.DBus GetId >/dev/null 2>&1
}

# start_bus: starts the private bus (our child; its pid in $BUS_PID and FL_PIDS, so that the
# cleanup stops it) and waits until it answers.
start_bus() {
        printf '\n===== %s: starting dbus-daemon\n' "$(date +%T.%3N)" >>"$BUS_LOG"
        dbus-daemon --config-file="$BUS_CONF" --nofork --nopidfile --nosyslog \
                </dev/null >>"$BUS_LOG" 2>&1 8>&- &
        BUS_PID=$!
        FL_PIDS+=("$BUS_PID")
        if ! wait_until 10 bus_ok; then
                cat "$BUS_LOG"
                fail "the private dbus-daemon (pid $BUS_PID) did not answer on $BUS_SOCKET within 10 s"
        fi
        log "private dbus-daemon running as pid $BUS_PID on $DBUS_SYSTEM_BUS_ADDRESS"
}

# kill_bus: SIGKILL to the private bus, reaped, and forgotten by the cleanup.
kill_bus() {
        local i

        kill -KILL "$BUS_PID"
        wait "$BUS_PID" 2>/dev/null || true
        for i in "${!FL_PIDS[@]}"; do
                [ "${FL_PIDS[$i]}" != "$BUS_PID" ] || unset 'FL_PIDS[i]'
        done
        log "killed the private dbus-daemon (pid $BUS_PID)"
        BUS_PID=
}

# on_shared_bus COMMAND...: runs COMMAND against the machine's system bus.
on_shared_bus() { DBUS_SYSTEM_BUS_ADDRESS=$SHARED_BUS "$@"; }

bytes_read() { get_prop "$NAME" BytesRead; }

# reconnect_logged: the daemon logged a reconnect after line $LOG_LINES of its log.
reconnect_logged() {
        tail -n +"$((LOG_LINES + 1))" "$FL_DAEMON_LOG" | grep -q "Reconnected to the system bus"
}

NAME=bus-reconnect
make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/ext4.img" 16M "$FL_TMP/tree"

step "private system bus"
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$BUS_SOCKET
start_bus
start_daemon
# The daemon and the clients use the private bus, not the machine's.
on_shared_bus no_owner || fail "$FL_BUS is owned on the shared system bus $SHARED_BUS"

step "map and mount"
DEV=$(ctl_map "$NAME" "$FL_TMP/ext4.img")
mount_ro "$DEV" "$FL_TMP/mnt" ext4
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
BEFORE=$(bytes_read)
LOG_LINES=$(wc -l <"$FL_DAEMON_LOG")

step "the bus goes away"
kill_bus
wait_for 10 "the daemon to notice the lost bus" \
        grep -q "Lost the connection to the system bus" "$FL_DAEMON_LOG"
alive "$FL_DAEMON_PID" || fail "fuseloopd (pid $FL_DAEMON_PID) exited when the bus went away"
expect_failure . ctl list
# Some reconnect attempts fail meanwhile.
sleep 2

step "every file reads back through the daemon while the bus is gone"
! bus_ok || fail "the private bus still answers after SIGKILL"
# With the page cache of the loop device and of the FUSE file dropped, the whole device (read
# with O_DIRECT) and then every file come from the daemon.
drop_caches
assert_eq "$(sha256_of "$FL_TMP/ext4.img")" "$(sha256_direct "$DEV")" "sha256 of $DEV (O_DIRECT)"
drop_caches
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
alive "$FL_DAEMON_PID" || fail "fuseloopd (pid $FL_DAEMON_PID) exited while the bus was gone"

step "the bus comes back at the same address"
start_bus
wait_for 60 "the daemon to own $FL_BUS again" has_owner
assert_eq "$FL_DAEMON_PID" "$(owner_pid)" "owner of $FL_BUS after the reconnect"
# The daemon logs it when it sees the reply to its RequestName, maybe just after busctl saw it.
wait_for 10 "the daemon to log the reconnect" reconnect_logged

step "the mapping is still there and was served meanwhile"
assert_eq "$NAME	$(mapping_path "$NAME")	$DEV	active	$((16 << 20))	$FL_TMP/ext4.img" \
        "$(list_row "$NAME")" "List() row after the reconnect"
assert_contains "$(ctl list)" "$NAME"
assert_eq "$DEV" "$(get_prop "$NAME" Device)" "Device after the reconnect"
AFTER=$(bytes_read)
log "BytesRead: $BEFORE before the bus went away, $AFTER after it came back"
# The reads while the bus was gone: at least the whole device (16 MiB) went through the daemon.
[ "$AFTER" -ge $((BEFORE + (16 << 20))) ] ||
        fail "BytesRead went from $BEFORE to $AFTER only while the bus was gone"
assert_eq 0 "$(get_prop "$NAME" ReadErrors)" "ReadErrors"
expect_error Busy flbus unmap "$NAME"

step "a new mapping works after the reconnect"
DEV2=$(ctl_map "$NAME-2" "$FL_TMP/ext4.img")
assert_eq "$(sha256_of "$FL_TMP/ext4.img")" "$(sha256_of "$DEV2")" "sha256 of $DEV2"
ctl unmap "$NAME-2"
assert_nothing_left "$NAME-2"

step "umount, unmap"
umount_tracked "$FL_TMP/mnt"
ctl unmap "$NAME"
assert_nothing_left "$NAME"
assert_nothing_mapped
stop_daemon TERM
assert_eq 0 "$FL_DAEMON_STATUS" "exit status after SIGTERM"
kill_bus
