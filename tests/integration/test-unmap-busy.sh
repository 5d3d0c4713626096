#!/bin/bash
# test-unmap-busy: unmap of a mounted mapping is refused with Busy (through the bus and through
# fuseloopctl, by name and by device) and changes nothing: the mount stays readable. After
# umount, unmap works and leaves nothing behind.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

NAME=busy
make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/busy.img" 16M "$FL_TMP/tree"
start_daemon
DEV=$(ctl_map "$NAME" "$FL_TMP/busy.img")
mount_ro "$DEV" "$FL_TMP/mnt" ext4

step "unmap while mounted is refused"
expect_error Busy flbus unmap "$NAME"
assert_contains "$ERR_OUT" "$NAME" "Busy error message"
expect_error Busy flbus unmap "$DEV"
expect_error Busy flbus unmap-object "$NAME"
expect_failure 'busy|in use|mounted|open' ctl unmap "$NAME"

step "the mapping is untouched"
assert_eq active "$(get_prop "$NAME" State)" "State after refused unmaps"
assert_eq "$FL_RUN_DIR/$NAME" "$(backing_file "$DEV")" "backing file after refused unmaps"
drop_caches
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
assert_eq 0 "$(get_prop "$NAME" ReadErrors)" "ReadErrors"

step "umount, then unmap works"
umount_tracked "$FL_TMP/mnt"
ctl unmap "$NAME"
assert_nothing_left "$NAME"
assert_nothing_mapped
