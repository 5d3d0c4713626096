#!/bin/bash
# test-daemon-notify: the daemon's sd_notify() messages as a service manager sees them, received
# on our own NOTIFY_SOCKET (tests/lib/sdnotify.py): READY=1 comes first, once, and only when the
# daemon owns its bus name (a second instance that cannot own it sends nothing); STATUS= counts
# the mappings; on SIGTERM with one mapping mounted and one idle: STOPPING=1, the idle mapping
# goes (MappingRemoved, reason "shutdown") and STATUS= names the busy mapping and its device as
# what the daemon waits for; after umount the last STATUS= says everything was removed, the
# daemon exits 0 and leaves nothing behind. Every message comes from the daemon's own pid
# (NotifyAccess=main in the unit). Each mapping stores its three fds (FDSTORE=1) and removes them
# when it goes (FDSTOREREMOVE=1).
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

NOTIFY_SOCK=$FL_TMP/notify.sock
NOTIFY_LOG=$FL_TMP/notify.log
NOTIFY_BARRIERS=0
DPID=

BUSY=busy-at-exit
IDLE=idle-at-exit

sdnotify() { "$PYTHON" "$FL_LIB_DIR/sdnotify.py" "$@"; }

# notify_sync: once it returns, every datagram sent to our socket before it is in $NOTIFY_LOG
# (datagrams on one AF_UNIX socket are received in the order they were sent).
notify_sync() {
        NOTIFY_BARRIERS=$((NOTIFY_BARRIERS + 1))
        sdnotify send "$NOTIFY_SOCK" "X_TEST_BARRIER=$NOTIFY_BARRIERS" ||
                fail "could not send a datagram to $NOTIFY_SOCK"
        wait_for 10 "barrier $NOTIFY_BARRIERS in $NOTIFY_LOG" \
                grep -Eq "^[0-9?]+ X_TEST_BARRIER=$NOTIFY_BARRIERS\$" "$NOTIFY_LOG"
}

# all_daemon_messages: the payloads the daemon (pid $DPID) sent, one datagram a line, in order.
all_daemon_messages() {
        awk -v pid="$DPID" '$1 == pid { print substr($0, length($1) + 2) }' "$NOTIFY_LOG"
}

# daemon_messages: the same without the fd store's (FDSTORE=1, FDSTOREREMOVE=1: each mapping's
# fds; the fd store is test-daemon-fdstore's subject, this listener drops the fds).
daemon_messages() {
        all_daemon_messages | grep -v '^FDSTORE' || true
}

# fd_store_messages: the fd store messages, without the disk sequence numbers of the fd names.
fd_store_messages() {
        all_daemon_messages | grep '^FDSTORE' | sed -E 's/fuseloop-[0-9]+-/fuseloop-N-/' || true
}

# other_senders: datagrams that came from anyone but the daemon (our barriers and the
# listener's notes left out).
other_senders() {
        awk -v pid="$DPID" '/^# / || / X_TEST_BARRIER=[0-9]+$/ { next } $1 != pid' "$NOTIFY_LOG"
}

# has_message TEXT: the daemon sent exactly TEXT (one whole datagram).
has_message() {
        local msgs

        msgs=$(daemon_messages)
        [[ $'\n'$msgs$'\n' == *$'\n'"$1"$'\n'* ]]
}

count_message() { # TEXT
        daemon_messages | awk -v t="$1" '$0 == t { n++ } END { print n + 0 }'
}

last_status() { daemon_messages | awk '/^STATUS=/ { s = $0 } END { print s }'; }
last_status_is() { [ "$(last_status)" = "$1" ]; }

# messages_after TEXT: the daemon's messages after the first one that is exactly TEXT.
messages_after() {
        daemon_messages | awk -v t="$1" 'seen { print } $0 == t { seen = 1 }'
}

make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/busy.img" 16M "$FL_TMP/tree"
head -c $((2 << 20)) /dev/urandom >"$FL_TMP/idle.bin"

step "listen on our own NOTIFY_SOCKET"
: >"$NOTIFY_LOG"
"$PYTHON" "$FL_LIB_DIR/sdnotify.py" listen "$NOTIFY_SOCK" "$NOTIFY_LOG" --bus-name "$FL_BUS" >"$FL_TMP/sdnotify.log" 2>&1 8>&- &
LISTENER=$!
FL_PIDS+=("$LISTENER")
if ! wait_until 10 test -S "$NOTIFY_SOCK"; then
        cat "$FL_TMP/sdnotify.log"
        fail "sdnotify.py (pid $LISTENER) did not bind $NOTIFY_SOCK"
fi
notify_sync

step "start: READY=1 once the bus name is owned, then STATUS"
FL_DAEMON_NOTIFY_SOCKET=$NOTIFY_SOCK
start_daemon
DPID=$FL_DAEMON_PID
wait_for 10 "READY=1 from fuseloopd" has_message READY=1
wait_for 10 "the first STATUS=" has_message "STATUS=Serving 0 mappings."
notify_sync
assert_eq "READY=1"$'\n'"STATUS=Serving 0 mappings." "$(daemon_messages)" "messages of fuseloopd after start-up"
# The listener asked the bus who owns the name as soon as READY=1 had arrived.
assert_eq "# READY=1 from $DPID: $FL_BUS owned by $DPID" "$(grep '^# READY=1 ' "$NOTIFY_LOG")" \
        "owner of $FL_BUS when READY=1 arrived"

step "a second instance cannot start (the run directory is locked): it must not report READY=1"
run_second_daemon
assert_ne 0 "$SECOND_STATUS" "exit status of a second instance"
assert_contains "$(cat "$FL_TMP/second.log")" "is fuseloopd running already?" "log of the second instance"
notify_sync
assert_eq "" "$(other_senders)" "datagrams from processes other than fuseloopd (pid $DPID; second instance: pid $SECOND_PID)"
assert_eq 1 "$(count_message READY=1)" "number of READY=1 from fuseloopd"
assert_eq "$DPID" "$(owner_pid)" "owner of $FL_BUS"

step "map: STATUS= counts the mappings"
start_monitor
DEV=$(ctl_map "$BUSY" "$FL_TMP/busy.img")
# Sent just after the reply to Map: wait for it.
wait_for 10 "STATUS=Serving 1 mapping." last_status_is "STATUS=Serving 1 mapping."
IDEV=$(ctl_map "$IDLE" "$FL_TMP/idle.bin")
wait_for 10 "STATUS=Serving 2 mappings." last_status_is "STATUS=Serving 2 mappings."
notify_sync
assert_eq "READY=1
STATUS=Serving 0 mappings.
STATUS=Serving 1 mapping.
STATUS=Serving 2 mappings." "$(daemon_messages | uniq)" "messages of fuseloopd while mapping (repeats folded)"
STORED=$(printf 'FDSTORE=1\\nFDNAME=fuseloop-N-%s\n' fuse source record fuse source record)
assert_eq "$STORED" "$(fd_store_messages)" "fd store messages of the two mappings"
mount_ro "$DEV" "$FL_TMP/mnt" ext4

step "SIGTERM with $BUSY mounted and $IDLE idle"
kill -TERM "$DPID"
wait_for 10 "STOPPING=1" has_message STOPPING=1
wait_signal 10 "^MappingRemoved $IDLE $(mapping_path "$IDLE") shutdown\$"
wait_for 10 "$IDEV to be released" loop_released "$IDEV"
WAITING="STATUS=Shutting down, waiting for 1 mapping to be released: '$BUSY' ($DEV)"
wait_for 10 "STATUS= naming $BUSY and $DEV" last_status_is "$WAITING"
alive "$DPID" || fail "fuseloopd exited although $DEV is still mounted"
notify_sync
assert_eq 1 "$(count_message STOPPING=1)" "number of STOPPING=1"
# STOPPING=1 comes first, then the shutdown status of both mappings (the idle one is still
# there while its detach job runs).
assert_eq "STATUS=Shutting down, waiting for 2 mappings to be released: '$BUSY' ($DEV), '$IDLE' ($IDEV)" \
        "$(messages_after STOPPING=1 | sed -n 1p)" "first message after STOPPING=1"
assert_eq "" "$(messages_after STOPPING=1 | grep -v '^STATUS=Shutting down, waiting for ' || true)" \
        "messages after STOPPING=1 that are not a shutdown STATUS= (before umount)"
assert_eq "$WAITING" "$(daemon_messages | tail -n 1)" "last message while $DEV is mounted"
if grep -q "^MappingRemoved $BUSY " "$FL_MONITOR_LOG"; then
        fail "MappingRemoved for '$BUSY' while it is still mounted"
fi

step "umount: the last STATUS= says everything was removed, exit 0"
umount_tracked "$FL_TMP/mnt"
wait_for 20 "fuseloopd to exit after the last user closed $DEV" not_alive "$DPID"
wait_signal 5 "^MappingRemoved $BUSY $(mapping_path "$BUSY") shutdown\$"
stop_daemon TERM 5
assert_eq 0 "$FL_DAEMON_STATUS" "exit status of fuseloopd"
REMOVED=$(printf 'FDSTOREREMOVE=1\\nFDNAME=fuseloop-N-%s\n' fuse source record fuse source record)
assert_eq "$STORED"$'\n'"$REMOVED" "$(fd_store_messages)" "fd store messages: each mapping's fds stored, then removed"
notify_sync
assert_eq "STATUS=All mappings removed, exiting." "$(daemon_messages | tail -n 1)" "last message of fuseloopd"
assert_eq 1 "$(count_message "STATUS=All mappings removed, exiting.")" "number of final STATUS="
assert_eq "$WAITING" "$(daemon_messages | tail -n 2 | sed -n 1p)" "message before the final STATUS="
assert_eq 1 "$(count_message READY=1)" "number of READY=1 from fuseloopd"
assert_eq "" "$(other_senders)" "datagrams from processes other than fuseloopd (pid $DPID)"
alive "$LISTENER" || fail "sdnotify.py (pid $LISTENER) exited: $(cat "$FL_TMP/sdnotify.log")"
log "sd_notify messages of fuseloopd:"$'\n'"$(daemon_messages)"
assert_nothing_left "$BUSY"
assert_nothing_left "$IDLE"
