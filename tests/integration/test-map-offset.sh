#!/bin/bash
# test-map-offset: --offset and --size map exactly one partition of a GPT image; the result
# mounts and reads back identical files, and the Offset/Size properties and device size say so.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

make_tree "$FL_TMP/tree1"
make_tree "$FL_TMP/tree2"
mkgpt "$FL_TMP/gpt.img" "$FL_TMP/tree1" "$FL_TMP/tree2"
start_daemon

step "map partition 1 (ext4) with byte values"
DEV1=$(ctl_map --offset "$FL_P1_OFFSET" --size "$FL_P1_SIZE" part-one "$FL_TMP/gpt.img")
assert_eq "$FL_P1_SIZE" "$(device_size "$DEV1")" "size of $DEV1"
assert_eq "$FL_P1_OFFSET" "$(get_prop part-one Offset)" "Offset"
assert_eq "$FL_P1_SIZE" "$(get_prop part-one Size)" "Size"
assert_eq "$(dd if="$FL_TMP/gpt.img" bs=1M skip=$((FL_P1_OFFSET >> 20)) count=$((FL_P1_SIZE >> 20)) status=none | sha256sum | cut -d' ' -f1)" \
        "$(sha256_of "$DEV1")" "sha256 of $DEV1 against the partition's bytes in the image"

step "map partition 2 (squashfs) with a size suffix"
DEV2=$(ctl_map --offset "$FL_P2_OFFSET" --size 12M part-two "$FL_TMP/gpt.img")
assert_eq "$FL_P2_SIZE" "$(device_size "$DEV2")" "size of $DEV2"
assert_eq "$FL_P2_OFFSET" "$(get_prop part-two Offset)" "Offset"

step "mount both"
drop_caches
mount_ro "$DEV1" "$FL_TMP/mnt1" ext4
mount_ro "$DEV2" "$FL_TMP/mnt2" squashfs
check_tree "$FL_TMP/mnt1" "$FL_TMP/tree1"
check_tree "$FL_TMP/mnt2" "$FL_TMP/tree2"

step "offset only: the rest of the image from partition 2 on"
DEV3=$(ctl_map --offset "$FL_P2_OFFSET" rest "$FL_TMP/gpt.img")
assert_eq $((27 * 1024 * 1024 - FL_P2_OFFSET)) "$(device_size "$DEV3")" "size of $DEV3"
assert_eq "$(dd if="$FL_TMP/gpt.img" bs=1M skip=$((FL_P2_OFFSET >> 20)) status=none | sha256sum | cut -d' ' -f1)" \
        "$(sha256_of "$DEV3")" "sha256 of $DEV3"

step "unmap"
umount_tracked "$FL_TMP/mnt1"
umount_tracked "$FL_TMP/mnt2"
ctl unmap part-one
ctl unmap part-two
ctl unmap rest
for n in part-one part-two rest; do
        assert_nothing_left "$n"
done
assert_nothing_mapped
