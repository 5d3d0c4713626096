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

need_private_bus

bytes_read() { get_prop "$NAME" BytesRead; }

# reconnect_logged: the daemon logged a reconnect after line $LOG_LINES of its log.
reconnect_logged() {
        tail -n +"$((LOG_LINES + 1))" "$FL_DAEMON_LOG" | grep -q "Reconnected to the system bus"
}

NAME=bus-reconnect
make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/ext4.img" 16M "$FL_TMP/tree"

step "private system bus"
private_bus_start
start_daemon
# The daemon and the clients use the private bus, not the machine's.
on_shared_bus no_owner || fail "$FL_BUS is owned on the shared system bus $FL_SHARED_BUS"

step "map and mount"
# Through the daemon (no passthrough): its read counters are checked below.
DEV=$(ctl_map --passthrough=off "$NAME" "$FL_TMP/ext4.img")
mount_ro "$DEV" "$FL_TMP/mnt" ext4
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
BEFORE=$(bytes_read)
LOG_LINES=$(wc -l <"$FL_DAEMON_LOG")

step "the bus goes away"
# SIGKILL, as in a crash: the socket file stays.
private_bus_stop KILL
wait_for 10 "the daemon to notice the lost bus" \
        grep -q "Lost the connection to the system bus" "$FL_DAEMON_LOG"
alive "$FL_DAEMON_PID" || fail "fuseloopd (pid $FL_DAEMON_PID) exited when the bus went away"
expect_failure . ctl list
# Some reconnect attempts fail meanwhile.
sleep 2

step "every file reads back through the daemon while the bus is gone"
! bus_answers || fail "the private bus still answers after SIGKILL"
# With the page cache of the loop device and of the FUSE file dropped, the whole device (read
# with O_DIRECT) and then every file come from the daemon.
drop_caches
assert_eq "$(sha256_of "$FL_TMP/ext4.img")" "$(sha256_direct "$DEV")" "sha256 of $DEV (O_DIRECT)"
drop_caches
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
alive "$FL_DAEMON_PID" || fail "fuseloopd (pid $FL_DAEMON_PID) exited while the bus was gone"

step "the bus comes back at the same address"
private_bus_start
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
private_bus_stop KILL
