#!/bin/bash
# test-unmap-lazy: "unmap --lazy" of a mounted mapping succeeds, the mapping keeps serving until
# the last user closes the device (umount), then it disappears by itself (MappingRemoved) and
# nothing is left. A lazy unmap of an unused mapping removes it at once.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

NAME=lazy
make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/lazy.img" 16M "$FL_TMP/tree"
start_daemon
start_monitor
DEV=$(ctl_map "$NAME" "$FL_TMP/lazy.img")
mount_ro "$DEV" "$FL_TMP/mnt" ext4

step "lazy unmap while mounted"
ctl unmap --lazy "$NAME" || fail "fuseloopctl unmap --lazy failed"
mapping_listed "$NAME" || fail "mapping vanished although the device is still mounted"
STATE=$(get_prop "$NAME" State)
assert_match '^(active|detaching)$' "$STATE" "State after lazy unmap"
log "state after lazy unmap: $STATE"
if grep -q "^MappingRemoved $NAME " "$FL_MONITOR_LOG"; then
        fail "MappingRemoved sent while the device is still mounted"
fi

step "the mount keeps working"
drop_caches
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
assert_eq 0 "$(get_prop "$NAME" ReadErrors)" "ReadErrors"

step "umount: the mapping goes away by itself"
umount_tracked "$FL_TMP/mnt"
wait_for 15 "'$NAME' to disappear from List()" mapping_not_listed "$NAME"
wait_signal 5 "^MappingRemoved $NAME $(mapping_path "$NAME") unmapped\$"
wait_for 5 "the loop device to be released" loop_released "$DEV"
assert_nothing_left "$NAME"
assert_nothing_mapped

step "lazy unmap of an unused mapping removes it at once"
DEV=$(ctl_map lazy-idle "$FL_TMP/lazy.img")
ctl unmap --lazy lazy-idle
assert_nothing_left lazy-idle
assert_nothing_mapped
