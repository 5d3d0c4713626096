#!/bin/bash
# test-map-ext4: an ext4 image made with mke2fs -d, mapped with fuseloopctl, is a read-only loop
# device backed by the run directory; mounted read-only, every file reads back identical
# (sha256); counters move; umount + unmap leaves nothing behind.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

NAME=ext4-image
make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/ext4.img" 16M "$FL_TMP/tree"
start_daemon
start_monitor

step "map"
# Through the daemon (no passthrough): its read counters are checked below.
DEV=$(ctl_map --passthrough=off "$NAME" "$FL_TMP/ext4.img")
is_block "$DEV" || fail "$DEV is not a block device"
assert_eq "$FL_RUN_DIR/$NAME" "$(backing_file "$DEV")" "backing file of $DEV"
[ -f "$FL_RUN_DIR/$NAME" ] || fail "$FL_RUN_DIR/$NAME is not a regular file"
assert_match "^[0-9]+ [0-9]+ [0-9:]+ / $FL_RUN_DIR/$NAME .* - fuse" \
        "$(awk -v p="$FL_RUN_DIR/$NAME" '$5 == p' /proc/self/mountinfo)" "FUSE mount on the run file"
assert_eq 1 "$(blockdev --getro "$DEV")" "read-only flag of $DEV"
# Map returns only after udev processed the device: its database already knows the file system.
assert_eq ext4 "$(udevadm info --query=property --property=ID_FS_TYPE --value "$DEV")" \
        "ID_FS_TYPE of $DEV in the udev database right after map"
assert_eq $((16 << 20)) "$(device_size "$DEV")" "size of $DEV"
assert_eq "$(sha256_of "$FL_TMP/ext4.img")" "$(sha256_of "$DEV")" "sha256 of the whole device"
wait_signal 5 "^MappingAdded $NAME $(mapping_path "$NAME") $DEV\$"

step "list row and properties"
# a(sossts): name, object path, device, state, size, source (the order of the signature).
assert_eq "$NAME	$(mapping_path "$NAME")	$DEV	active	$((16 << 20))	$FL_TMP/ext4.img" \
        "$(list_row "$NAME")" "List() row"
assert_eq "$NAME" "$(get_prop "$NAME" Name)" "Name"
assert_eq "$DEV" "$(get_prop "$NAME" Device)" "Device"
assert_eq "$FL_RUN_DIR/$NAME" "$(get_prop "$NAME" BackingFile)" "BackingFile"
assert_eq "$FL_TMP/ext4.img" "$(get_prop "$NAME" Source)" "Source"
assert_eq active "$(get_prop "$NAME" State)" "State"
assert_eq $((16 << 20)) "$(get_prop "$NAME" Size)" "Size"
assert_eq 0 "$(get_prop "$NAME" Offset)" "Offset"
assert_eq 0 "$(get_prop "$NAME" OwnerUID)" "OwnerUID"

step "mount read-only and compare every file"
drop_caches
mount_ro "$DEV" "$FL_TMP/mnt" ext4
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
BYTES=$(get_prop "$NAME" BytesRead)
REQS=$(get_prop "$NAME" ReadRequests)
[ "$BYTES" -ge $((3 << 20)) ] || fail "BytesRead is $BYTES after reading more than 3 MiB of files"
[ "$REQS" -gt 0 ] || fail "ReadRequests is $REQS"
assert_eq 0 "$(get_prop "$NAME" ReadErrors)" "ReadErrors"
# A write through the read-only mount must fail and change nothing.
! touch "$FL_TMP/mnt/new-file" 2>/dev/null || fail "could create a file on the read-only mount"

step "umount, unmap"
umount_tracked "$FL_TMP/mnt"
ctl unmap "$NAME"
wait_signal 5 "^MappingRemoved $NAME $(mapping_path "$NAME") unmapped\$"
assert_nothing_left "$NAME"
assert_nothing_mapped
is_not_block "$DEV" || [ -z "$(backing_file "$DEV")" ] || fail "$DEV still has a backing file"
