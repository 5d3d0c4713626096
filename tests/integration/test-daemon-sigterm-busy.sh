#!/bin/bash
# test-daemon-sigterm-busy: SIGTERM while a mapping is mounted: the daemon detaches it lazily and
# keeps serving (the mount stays readable) until the last user closes the device; after umount
# it removes the mapping (reason "shutdown"), exits 0 and leaves nothing behind.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

NAME=busy-at-exit
make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/busy.img" 16M "$FL_TMP/tree"
head -c $((2 << 20)) /dev/urandom >"$FL_TMP/idle.bin"
start_daemon
start_monitor
DEV=$(ctl_map "$NAME" "$FL_TMP/busy.img")
IDLE=$(ctl_map idle-at-exit "$FL_TMP/idle.bin")
mount_ro "$DEV" "$FL_TMP/mnt" ext4
PID=$FL_DAEMON_PID

step "SIGTERM while mounted"
kill -TERM "$PID"
# The idle mapping goes at once; the busy one stays and keeps serving.
wait_signal 10 "^MappingRemoved idle-at-exit $(mapping_path idle-at-exit) shutdown\$"
wait_for 10 "$IDLE to be released" loop_released "$IDLE"
alive "$PID" || fail "fuseloopd exited although $DEV is still mounted"
assert_eq "$FL_RUN_DIR/$NAME" "$(backing_file "$DEV")" "backing file of the mounted device"
drop_caches
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
alive "$PID" || fail "fuseloopd exited while the mount was being read"
if grep -q "^MappingRemoved $NAME " "$FL_MONITOR_LOG"; then
        fail "MappingRemoved for '$NAME' while it is still mounted"
fi

step "umount: the daemon finishes and exits 0"
umount_tracked "$FL_TMP/mnt"
wait_for 20 "fuseloopd to exit after the last user closed $DEV" not_alive "$PID"
wait_signal 5 "^MappingRemoved $NAME $(mapping_path "$NAME") shutdown\$"
stop_daemon TERM 5
assert_eq 0 "$FL_DAEMON_STATUS" "exit status of fuseloopd"
assert_nothing_left "$NAME"
assert_nothing_left idle-at-exit
