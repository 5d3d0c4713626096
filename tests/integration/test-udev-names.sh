#!/bin/bash
# test-udev-names: the installed udev rules (60-fuseloop.rules) give every mapping
# /dev/fuseloop/<name> and /dev/fuseloop/<name>-part<M>, present the moment "map" returns and
# gone the moment "unmap" returns; the links lead to the right devices (checked by content), the
# devices carry FUSELOOP_NAME and FUSELOOP_SOURCE (escaped for udev), "untrusted" mappings
# UDISKS_IGNORE=1 on the disk and every partition (others not); a name with every special
# character works; the links survive a daemon restart (kill -9, resumed from the fd store) and a
# "change" event afterwards; a user's own loop device of a file named like a mapping's udev file
# gets no link.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

RULES=/lib/udev/rules.d/60-fuseloop.rules
[ -f "$RULES" ] || skip "$RULES is not installed (meson install)"
cmp -s "$RULES" "$FUSELOOP_SRC/udev/60-fuseloop.rules" ||
        fail "the installed $RULES differs from udev/60-fuseloop.rules: run meson install"

make_tree "$FL_TMP/tree1"
make_tree "$FL_TMP/tree2"
mkgpt "$FL_TMP/gpt.img" "$FL_TMP/tree1" "$FL_TMP/tree2"
# A source path with a blank, quotes and a backslash: udev must get it escaped.
SRC="$FL_TMP/an \"odd\" im'age\\.img"
cp "$FL_TMP/gpt.img" "$SRC"
make_tree "$FL_TMP/tree3"
mkext4 "$FL_TMP/plain.img" 16M "$FL_TMP/tree3"

fdstore_start
start_daemon

prop() { udevadm info --query=property --property="$2" --value "$1"; }
link_of() { readlink -f "/dev/fuseloop/$1"; }

NAME='vm-100:disk@0+x.y_z'

step "map a partitioned image as untrusted: links exist when map returns"
DEV=$(ctl_map --partscan --untrusted "$NAME" "$SRC")
# No waiting: Map returns only after udev processed the disk and its partitions.
assert_eq "$DEV" "$(link_of "$NAME")" "/dev/fuseloop/$NAME"
assert_eq "${DEV}p1" "$(link_of "$NAME-part1")" "/dev/fuseloop/$NAME-part1"
assert_eq "${DEV}p2" "$(link_of "$NAME-part2")" "/dev/fuseloop/$NAME-part2"
[ ! -e "/dev/fuseloop/$NAME-part3" ] || fail "a link for a third partition of a disk with two"

step "the links lead to the right data"
drop_caches
mount_ro "/dev/fuseloop/$NAME-part1" "$FL_TMP/mnt1" ext4
mount_ro "/dev/fuseloop/$NAME-part2" "$FL_TMP/mnt2" squashfs
check_tree "$FL_TMP/mnt1" "$FL_TMP/tree1"
check_tree "$FL_TMP/mnt2" "$FL_TMP/tree2"
umount_tracked "$FL_TMP/mnt1"
umount_tracked "$FL_TMP/mnt2"

step "udev properties: name, escaped source, UDISKS_IGNORE on disk and partitions"
ESCAPED=$("$PYTHON" -c 'import sys; print("".join("\\x%02x" % c if c <= 32 or c in b"\\\"\x27\x7f" else chr(c) for c in sys.argv[1].encode()))' "$SRC")
for d in "$DEV" "${DEV}p1" "${DEV}p2"; do
        assert_eq "$NAME" "$(prop "$d" FUSELOOP_NAME)" "FUSELOOP_NAME of $d"
        assert_eq "$ESCAPED" "$(prop "$d" FUSELOOP_SOURCE)" "FUSELOOP_SOURCE of $d"
        assert_eq 1 "$(prop "$d" UDISKS_IGNORE)" "UDISKS_IGNORE of $d"
done
assert_eq "$SRC" "$(ctl status --json "$NAME" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["source"])')" \
        "Source on the bus (not escaped)"

step "a trusted mapping: links, no UDISKS_IGNORE"
DEV2=$(ctl_map trusted "$FL_TMP/plain.img")
assert_eq "$DEV2" "$(link_of trusted)" "/dev/fuseloop/trusted"
assert_eq trusted "$(prop "$DEV2" FUSELOOP_NAME)" "FUSELOOP_NAME of $DEV2"
assert_eq "" "$(prop "$DEV2" UDISKS_IGNORE)" "UDISKS_IGNORE of a trusted mapping"
assert_eq "" "$(prop "$DEV2" FUSELOOP_UNTRUSTED)" "FUSELOOP_UNTRUSTED of a trusted mapping"

step "a user's loop device of a file named like a udev file gets no link"
# What the rules import for a mapping, written where a user could write it.
printf 'FUSELOOP_NAME=spoofed\n' >"$FL_TMP/plain.img#udev"
OWN=$(losetup --show -f -r "$FL_TMP/plain.img")
fl_record loop "$OWN"
udevadm settle -t 30
[ ! -e /dev/fuseloop/spoofed ] || fail "a loop device outside the run directory got /dev/fuseloop/spoofed"
assert_eq "" "$(prop "$OWN" FUSELOOP_NAME)" "FUSELOOP_NAME of a foreign loop device"
losetup -d "$OWN"

step "the links survive kill -9 and a restart (resumed from the fd store)"
stop_daemon KILL
start_daemon
assert_eq "$DEV" "$(link_of "$NAME")" "/dev/fuseloop/$NAME after the restart"
[ -f "$FL_RUN_DIR/$NAME#udev" ] || fail "the start-up clean-up removed the udev file of a resumed mapping"
# udev processes the devices again as it would after any "change": the links stay.
udevadm trigger --action=change --settle "$DEV" "${DEV}p1" "${DEV}p2" "$DEV2"
assert_eq "$DEV" "$(link_of "$NAME")" "/dev/fuseloop/$NAME after a change event"
assert_eq "${DEV}p2" "$(link_of "$NAME-part2")" "/dev/fuseloop/$NAME-part2 after a change event"
assert_eq 1 "$(prop "${DEV}p1" UDISKS_IGNORE)" "UDISKS_IGNORE of ${DEV}p1 after a change event"
assert_eq "$DEV2" "$(link_of trusted)" "/dev/fuseloop/trusted after a change event"

step "unmap: the links are gone when unmap returns"
ctl unmap "$NAME"
for l in "$NAME" "$NAME-part1" "$NAME-part2"; do
        [ ! -e "/dev/fuseloop/$l" ] && [ ! -L "/dev/fuseloop/$l" ] || fail "/dev/fuseloop/$l is still there after unmap"
done
[ ! -e "$FL_RUN_DIR/$NAME#udev" ] || fail "the udev file is still there after unmap"
assert_eq "" "$(prop "$DEV" FUSELOOP_NAME)" "FUSELOOP_NAME of $DEV after unmap"
ctl unmap trusted
[ ! -e /dev/fuseloop/trusted ] || fail "/dev/fuseloop/trusted is still there after unmap"
assert_nothing_left "$NAME"
assert_nothing_left trusted
assert_nothing_mapped
