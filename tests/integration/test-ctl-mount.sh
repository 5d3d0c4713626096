#!/bin/bash
# test-ctl-mount: "fuseloopctl map --mount DIR" mounts the first partition (or the one --partition
# names, or the whole device when there is no partition table) read-only, and records DIR in the
# mapping; "unmap" unmounts it first, also when given the device; a busy mount keeps the mapping
# (exit code 5) and changes nothing, unless --lazy: then the mount point goes at once and the
# mapping once the last file is closed; a mount that fails leaves no mapping behind.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

make_tree "$FL_TMP/tree1"
make_tree "$FL_TMP/tree2"
mkgpt "$FL_TMP/gpt.img" "$FL_TMP/tree1" "$FL_TMP/tree2"
make_tree "$FL_TMP/tree3"
mkext4 "$FL_TMP/fs.img" 16M "$FL_TMP/tree3"
head -c $((1 << 20)) /dev/zero >"$FL_TMP/nofs.bin"
mkdir -p "$FL_TMP/m1" "$FL_TMP/m2" "$FL_TMP/m3" "$FL_TMP/m4"
start_daemon

# mounted_from DIR: the source device of the mount at DIR, or nothing.
mounted_from() { findmnt -n -o SOURCE --mountpoint "$1" 2>/dev/null || true; }
mount_options() { findmnt -n -o OPTIONS --mountpoint "$1"; }

step "map --mount: the first partition, read-only"
DEV=$(ctl_map --mount "$FL_TMP/m1" gpt "$FL_TMP/gpt.img")
assert_eq "${DEV}p1" "$(mounted_from "$FL_TMP/m1")" "what is mounted at m1"
assert_match '(^|,)ro(,|$)' "$(mount_options "$FL_TMP/m1")" "mount options at m1"
check_tree "$FL_TMP/m1" "$FL_TMP/tree1"
assert_eq "$FL_TMP/m1" "$(get_prop gpt MountPoint)" "MountPoint"
assert_eq true "$(get_prop gpt PartitionScan)" "PartitionScan (--mount implies --partscan)"
assert_contains "$(ctl status gpt)" "Mount point: $FL_TMP/m1" "status"

step "--partition 2"
DEV2=$(ctl_map --mount "$FL_TMP/m2" --partition 2 gpt2 "$FL_TMP/gpt.img")
assert_eq "${DEV2}p2" "$(mounted_from "$FL_TMP/m2")" "what is mounted at m2"
check_tree "$FL_TMP/m2" "$FL_TMP/tree2"

step "no partition table: the whole device"
DEV3=$(ctl_map --mount "$FL_TMP/m3" plain "$FL_TMP/fs.img")
assert_eq "$DEV3" "$(mounted_from "$FL_TMP/m3")" "what is mounted at m3"
check_tree "$FL_TMP/m3" "$FL_TMP/tree3"

step "unmap while a file is open there: exit code 5, mount and mapping stay"
exec 7<"$FL_TMP/m1/sub/deeper/hello.txt"
rc=0; ctl unmap gpt >"$FL_TMP/out" 2>&1 || rc=$?
assert_eq 5 "$rc" "exit status of unmap of a busy mount ($(cat "$FL_TMP/out"))"
assert_contains "$(cat "$FL_TMP/out")" "'$FL_TMP/m1' is busy" "message"
assert_eq "${DEV}p1" "$(mounted_from "$FL_TMP/m1")" "mount after a refused unmap"
assert_eq active "$(get_prop gpt State)" "State after a refused unmap"

step "unmap --lazy of the busy mount: the mount point goes at once, the mapping once the file is closed"
rc=0; ctl unmap --lazy gpt >"$FL_TMP/out" 2>&1 || rc=$?
assert_eq 0 "$rc" "exit status of unmap --lazy ($(cat "$FL_TMP/out"))"
assert_eq "" "$(mounted_from "$FL_TMP/m1")" "mount at m1 after unmap --lazy"
mapping_listed gpt || fail "the mapping went while a file of its file system was open"
assert_eq "$(cat "$FL_TMP/tree1/sub/deeper/hello.txt")" "$(cat <&7)" "the open file, read after unmap --lazy"
exec 7<&-
wait_for 20 "the mapping to go once the file was closed" mapping_not_listed gpt
assert_nothing_left gpt

step "unmap unmounts first (by device and by name)"
ctl unmap "$DEV2"
assert_eq "" "$(mounted_from "$FL_TMP/m2")" "mount at m2 after unmap of $DEV2"
assert_nothing_left gpt2
ctl unmap plain
assert_eq "" "$(mounted_from "$FL_TMP/m3")" "mount at m3 after unmap of plain"
assert_nothing_left plain

step "a mount point unmounted by hand meanwhile: unmap just unmaps"
ctl_map --mount "$FL_TMP/m3" byhand "$FL_TMP/fs.img" >/dev/null
umount "$FL_TMP/m3"
ctl unmap byhand
assert_nothing_left byhand

step "something else mounted at the recorded place is left alone"
DEV4=$(ctl_map --mount "$FL_TMP/m4" other "$FL_TMP/fs.img")
umount "$FL_TMP/m4"
mount -t tmpfs -o size=1M fuseloop-test "$FL_TMP/m4"
ctl unmap other
assert_eq fuseloop-test "$(mounted_from "$FL_TMP/m4")" "the unrelated mount at m4"
umount "$FL_TMP/m4"
assert_nothing_left other

step "a mount that fails leaves no mapping"
rc=0; ctl map --mount "$FL_TMP/m1" nofs "$FL_TMP/nofs.bin" >"$FL_TMP/out" 2>&1 || rc=$?
assert_eq 1 "$rc" "exit status of map --mount of data without a file system ($(cat "$FL_TMP/out"))"
assert_contains "$(cat "$FL_TMP/out")" "failed to mount" "message"
mapping_not_listed nofs || fail "the mapping stayed after its mount failed"
assert_nothing_left nofs
rc=0; ctl map --mount "$FL_TMP/m1" --partition 3 p3 "$FL_TMP/gpt.img" >"$FL_TMP/out" 2>&1 || rc=$?
assert_eq 1 "$rc" "exit status of --partition 3 of a disk with two ($(cat "$FL_TMP/out"))"
assert_contains "$(cat "$FL_TMP/out")" "has no partition 3 (it has 2)" "message"
assert_nothing_left p3
rc=0; ctl map --mount "$FL_TMP/does-not-exist" x "$FL_TMP/fs.img" >"$FL_TMP/out" 2>&1 || rc=$?
assert_eq 2 "$rc" "exit status of --mount with a missing directory"
mapping_not_listed x || fail "a refused command line mapped something"
assert_eq "" "$(mounted_from "$FL_TMP/m1")" "m1 at the end"
assert_nothing_mapped
