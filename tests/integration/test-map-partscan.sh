#!/bin/bash
# test-map-partscan: a GPT image (made with sfdisk, ext4 in partition 1, squashfs in partition 2)
# mapped with --partscan: both partition nodes exist the moment "map" returns; each mounted
# read-only reads back identical files.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

NAME=gpt-image
make_tree "$FL_TMP/tree1"
make_tree "$FL_TMP/tree2"
mkgpt "$FL_TMP/gpt.img" "$FL_TMP/tree1" "$FL_TMP/tree2"
start_daemon

step "map with --partscan"
DEV=$(ctl_map --partscan "$NAME" "$FL_TMP/gpt.img")
# No waiting: Map returns only once udev has processed the disk and all partitions.
is_block "${DEV}p1" || fail "${DEV}p1 does not exist right after map returned"
is_block "${DEV}p2" || fail "${DEV}p2 does not exist right after map returned"
is_not_block "${DEV}p3" || fail "${DEV}p3 exists, but the image has two partitions"
assert_eq true "$(get_prop "$NAME" PartitionScan)" "PartitionScan"
assert_eq "$FL_P1_SIZE" "$(device_size "${DEV}p1")" "size of ${DEV}p1"
assert_eq "$FL_P2_SIZE" "$(device_size "${DEV}p2")" "size of ${DEV}p2"
assert_eq "$((FL_P1_OFFSET / 512))" "$(cat "/sys/class/block/${DEV#/dev/}p1/start")" "start of p1"
assert_eq "$((FL_P2_OFFSET / 512))" "$(cat "/sys/class/block/${DEV#/dev/}p2/start")" "start of p2"
# udev has processed the partitions: its database knows their file system.
assert_eq ext4 "$(udevadm info --query=property --property=ID_FS_TYPE --value "${DEV}p1")" "ID_FS_TYPE of p1 in the udev database"
assert_eq squashfs "$(udevadm info --query=property --property=ID_FS_TYPE --value "${DEV}p2")" "ID_FS_TYPE of p2 in the udev database"

step "mount both partitions"
drop_caches
mount_ro "${DEV}p1" "$FL_TMP/mnt1" ext4
mount_ro "${DEV}p2" "$FL_TMP/mnt2" squashfs
check_tree "$FL_TMP/mnt1" "$FL_TMP/tree1"
check_tree "$FL_TMP/mnt2" "$FL_TMP/tree2"
assert_eq 0 "$(get_prop "$NAME" ReadErrors)" "ReadErrors"

step "unmap"
expect_error Busy flbus unmap "$NAME"
umount_tracked "$FL_TMP/mnt1"
umount_tracked "$FL_TMP/mnt2"
ctl unmap "$NAME"
wait_for 10 "${DEV}p1 to disappear" is_not_block "${DEV}p1"
assert_nothing_left "$NAME"
assert_nothing_mapped
