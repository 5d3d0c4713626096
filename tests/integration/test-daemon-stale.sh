#!/bin/bash
# test-daemon-stale: a daemon killed with SIGKILL without a service manager (no fd store) leaves
# mappings behind (stale FUSE mounts, loop devices, run files); the next daemon cleans all of that
# up during start-up (before it owns the bus name) and says so in its log. A device that is still
# mounted from a dead mapping is detached lazily and reported: it goes when it is unmounted. The
# names can be mapped again.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

NAME=stale
head -c $((4 << 20)) /dev/urandom >"$FL_TMP/data.bin"
make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/ext4.img" 16M "$FL_TMP/tree"
start_daemon
DEV=$(ctl_map "$NAME" "$FL_TMP/data.bin")
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_of "$DEV")" "content of $DEV"
MDEV=$(ctl_map mounted "$FL_TMP/ext4.img")
mount_ro "$MDEV" "$FL_TMP/mnt" ext4
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"

step "kill -9 the daemon"
stop_daemon KILL
wait_for 5 "release of $FL_BUS" no_owner
# The leftovers are real.
assert_eq "$FL_RUN_DIR/$NAME" "$(backing_file "$DEV")" "backing file of $DEV after the kill"
awk -v p="$FL_RUN_DIR/$NAME" '$5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo ||
        fail "no stale FUSE mount on $FL_RUN_DIR/$NAME after the kill"
[ -e "$FL_RUN_DIR/$NAME" ] || fail "no run file $FL_RUN_DIR/$NAME after the kill"
LOGLINES=$(wc -l <"$FL_DAEMON_LOG")

step "start again: leftovers are gone once the daemon owns its name"
start_daemon
# No waiting: start-up cleanup happens before the name is taken.
assert_eq "" "$(backing_file "$DEV")" "backing file of $DEV after start-up"
assert_nothing_left "$NAME"
tail -n +"$((LOGLINES + 1))" "$FL_DAEMON_LOG" >"$FL_TMP/second.log"
grep -Ei 'clean|stale|leftover|dangling' "$FL_TMP/second.log" | grep -F "$NAME" ||
        fail "the daemon log does not mention cleaning up '$NAME'"

step "the mounted device of the dead mapping: reported, detached at its last close"
grep -F "${MDEV#/dev/}" "$FL_TMP/second.log" | grep -F "still in use" ||
        fail "the daemon log does not report $MDEV as still in use"
assert_eq 1 "$(cat "/sys/block/${MDEV#/dev/}/loop/autoclear")" "autoclear of $MDEV"
umount_tracked "$FL_TMP/mnt"
wait_for 10 "$MDEV to be released after the unmount" loop_released "$MDEV"
assert_nothing_left mounted
assert_nothing_mapped

step "the name can be mapped again"
DEV=$(ctl_map "$NAME" "$FL_TMP/data.bin")
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_of "$DEV")" "content of $DEV"
ctl unmap "$NAME"
assert_nothing_left "$NAME"
