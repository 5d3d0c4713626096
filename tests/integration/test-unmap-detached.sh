#!/bin/bash
# test-unmap-detached: a loop device detached behind the daemon's back ("losetup -d") is noticed:
# the mapping disappears with MappingRemoved reason "detached" and nothing is left; the name
# can be mapped again.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

NAME=detach-me
head -c $((4 << 20)) /dev/urandom >"$FL_TMP/data.bin"
start_daemon
start_monitor
DEV=$(ctl_map "$NAME" "$FL_TMP/data.bin")
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_of "$DEV")" "sha256 of $DEV"

step "losetup -d $DEV"
losetup -d "$DEV"
wait_signal 15 "^MappingRemoved $NAME $(mapping_path "$NAME") detached\$"
wait_for 10 "'$NAME' to disappear from List()" mapping_not_listed "$NAME"
wait_for 10 "$FL_RUN_DIR/$NAME to be removed" eval "[ ! -e '$FL_RUN_DIR/$NAME' ]"
assert_nothing_left "$NAME"
assert_nothing_mapped

step "the name can be mapped again"
DEV=$(ctl_map "$NAME" "$FL_TMP/data.bin")
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_of "$DEV")" "sha256 of $DEV"
ctl unmap "$NAME"
assert_nothing_left "$NAME"
