#!/bin/bash
# test-map-fd: Map with a file descriptor passed over the bus (python3-dbus UnixFd): the mapping
# outlives the client and its fd, survives the unlink of the file, reports the file as Source;
# options travel with it; bind-to-caller ends the mapping when the caller's connection closes.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/fd.img" 16M "$FL_TMP/tree"
start_daemon
start_monitor

step "Map with an fd; the client exits right after"
OUT=$(flbus map-fd by-fd "$FL_TMP/fd.img") || fail "Map failed: $OUT"
read -r OBJ DEV <<<"$OUT"
assert_eq "$(mapping_path by-fd)" "$OBJ" "object path returned by Map"
[[ $DEV =~ ^/dev/loop[0-9]+$ ]] || fail "Map returned device '$DEV'"
assert_eq "$FL_TMP/fd.img" "$(get_prop by-fd Source)" "Source"
assert_eq 0 "$(get_prop by-fd OwnerUID)" "OwnerUID"
mount_ro "$DEV" "$FL_TMP/mnt" ext4
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"

step "the daemon holds its own fd: unlinking the image changes nothing"
cp "$FL_TMP/fd.img" "$FL_TMP/fd-copy.img"
rm "$FL_TMP/fd.img"
drop_caches
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
assert_eq "$(sha256_of "$FL_TMP/fd-copy.img")" "$(sha256_direct "$DEV")" "sha256 of $DEV after unlink (O_DIRECT)"
umount_tracked "$FL_TMP/mnt"
flbus unmap by-fd
assert_nothing_left by-fd

step "options with an fd: offset, size, partition-scan"
make_tree "$FL_TMP/tree2"
mkgpt "$FL_TMP/gpt.img" "$FL_TMP/tree" "$FL_TMP/tree2"
OUT=$(flbus map-fd gpt-fd "$FL_TMP/gpt.img" partition-scan=b:true)
DEV=${OUT#* }
is_block "${DEV}p1" || fail "${DEV}p1 missing right after Map returned"
is_block "${DEV}p2" || fail "${DEV}p2 missing right after Map returned"
OUT=$(flbus map-fd part2-fd "$FL_TMP/gpt.img" offset=t:"$FL_P2_OFFSET" size=t:"$FL_P2_SIZE")
DEV2=${OUT#* }
assert_eq "$FL_P2_SIZE" "$(device_size "$DEV2")" "size of $DEV2"
mount_ro "$DEV2" "$FL_TMP/mnt2" squashfs
check_tree "$FL_TMP/mnt2" "$FL_TMP/tree2"
umount_tracked "$FL_TMP/mnt2"
flbus unmap part2-fd
flbus unmap gpt-fd
assert_nothing_left part2-fd
assert_nothing_left gpt-fd

step "bind-to-caller"
touch "$FL_TMP/hold"
flbus map-fd bound "$FL_TMP/fd-copy.img" bind-to-caller=b:true --hold-while-exists "$FL_TMP/hold" \
        >"$FL_TMP/bound.out" 8>&- &
HOLDER=$!
FL_PIDS+=("$HOLDER")
wait_for 30 "Map with bind-to-caller to return" grep -q /dev/loop "$FL_TMP/bound.out"
DEV=$(cut -d' ' -f2 <"$FL_TMP/bound.out")
assert_eq "$(sha256_of "$FL_TMP/fd-copy.img")" "$(sha256_of "$DEV")" "sha256 of $DEV"
mapping_listed bound || fail "bound mapping not listed while its caller is connected"
rm "$FL_TMP/hold"
wait "$HOLDER" || fail "the holding client failed"
wait_signal 15 "^MappingRemoved bound $(mapping_path bound) "
REASON=$(grep "^MappingRemoved bound " "$FL_MONITOR_LOG" | awk '{print $4}')
assert_match '^(caller-gone|unmapped)$' "$REASON" "reason of the removal of a bind-to-caller mapping"
wait_for 10 "'bound' to disappear" mapping_not_listed bound
assert_nothing_left bound
assert_nothing_mapped
