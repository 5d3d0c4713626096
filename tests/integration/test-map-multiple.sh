#!/bin/bash
# test-map-multiple: two mappings at once, both mounted and read back; unmapping one (by name)
# leaves the other fully working; the second is unmapped by its /dev/loopN.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

make_tree "$FL_TMP/tree-a"
make_tree "$FL_TMP/tree-b"
mkext4 "$FL_TMP/a.img" 16M "$FL_TMP/tree-a"
mkext4 "$FL_TMP/b.img" 24M "$FL_TMP/tree-b"
start_daemon

step "map two images"
DEVA=$(ctl_map first "$FL_TMP/a.img")
DEVB=$(ctl_map second "$FL_TMP/b.img")
assert_ne "$DEVA" "$DEVB" "device of the second mapping"
assert_eq $((16 << 20)) "$(device_size "$DEVA")" "size of $DEVA"
assert_eq $((24 << 20)) "$(device_size "$DEVB")" "size of $DEVB"
assert_eq "first
second" "$(list_names | sort)" "names in List()"

step "mount both, read both"
drop_caches
mount_ro "$DEVA" "$FL_TMP/mnt-a" ext4
mount_ro "$DEVB" "$FL_TMP/mnt-b" ext4
check_tree "$FL_TMP/mnt-a" "$FL_TMP/tree-a"
check_tree "$FL_TMP/mnt-b" "$FL_TMP/tree-b"

step "read both at the same time"
sha256_direct "$DEVA" >"$FL_TMP/sha-a" &
PA=$!
sha256_direct "$DEVB" >"$FL_TMP/sha-b" &
PB=$!
wait "$PA" || fail "reading $DEVA failed"
wait "$PB" || fail "reading $DEVB failed"
assert_eq "$(sha256_of "$FL_TMP/a.img")" "$(cat "$FL_TMP/sha-a")" "sha256 of $DEVA read in parallel"
assert_eq "$(sha256_of "$FL_TMP/b.img")" "$(cat "$FL_TMP/sha-b")" "sha256 of $DEVB read in parallel"

step "unmap the first by name; the second keeps working"
umount_tracked "$FL_TMP/mnt-a"
ctl unmap first
assert_nothing_left first
mapping_listed second || fail "second mapping vanished with the first"
assert_eq active "$(get_prop second State)" "State of the second mapping"
drop_caches
check_tree "$FL_TMP/mnt-b" "$FL_TMP/tree-b"

step "unmap the second by device"
umount_tracked "$FL_TMP/mnt-b"
ctl unmap "$DEVB"
assert_nothing_left second
assert_nothing_mapped
