#!/bin/bash
# test-source-readerror: a source whose reads fail (errfs: EIO in one byte range) gives EIO on
# the device for that range only (to the sector: the sectors right before and after it read fine,
# its first and last sectors fail), counts ReadErrors, never hangs or crashes the daemon, and
# does not disturb another mapping; the failing mapping still unmaps cleanly.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

SIZE=$((4 << 20))
BAD=$((2560 << 10))     # 2.5 MiB: far from what udev's probes and readahead of the start touch
head -c "$SIZE" /dev/urandom >"$FL_TMP/data.bin"
head -c $((2 << 20)) /dev/urandom >"$FL_TMP/good.bin"
start_errfs "$FL_TMP/data.bin" "$BAD" 4096
cmp -n $((2 << 20)) "$FL_TMP/data.bin" "$FL_TMP/errfs/data" || fail "errfs serves wrong data"
! dd if="$FL_TMP/errfs/data" bs=4096 skip=$((BAD / 4096)) count=1 of=/dev/null status=none 2>/dev/null ||
        fail "errfs does not fail in its bad range"
start_daemon

step "map the failing source and a good one"
DEV=$(ctl_map failing "$FL_TMP/errfs/data")
GOOD=$(ctl_map good "$FL_TMP/good.bin")
assert_eq "$SIZE" "$(device_size "$DEV")" "size of $DEV"

step "reads outside the bad range work"
assert_eq "$(sha256_head "$FL_TMP/data.bin" $((2 << 20)))" \
        "$(dd if="$DEV" iflag=direct bs=64k count=32 status=none | sha256sum | cut -d' ' -f1)" \
        "first 2 MiB of $DEV"

step "a read of the bad range fails with EIO, and is counted"
ERRORS_BEFORE=$(get_prop failing ReadErrors)
expect_failure 'input/output error' dd if="$DEV" iflag=direct bs=4096 skip=$((BAD / 4096)) count=1 of=/dev/null
ERRORS_AFTER=$(get_prop failing ReadErrors)
[ "$ERRORS_AFTER" -gt "$ERRORS_BEFORE" ] ||
        fail "ReadErrors did not grow ($ERRORS_BEFORE -> $ERRORS_AFTER) after a failed read"
alive "$FL_DAEMON_PID" || fail "fuseloopd died"
assert_eq active "$(get_prop failing State)" "State after read errors"

# sector_sha FILE BYTE COUNT: sha256 of COUNT sectors (512 bytes) of FILE from BYTE on, read with
# O_DIRECT (a device) or plainly (the image).
sector_sha() {
        local flag=()

        [ ! -b "$1" ] || flag=(iflag=direct)
        dd if="$1" "${flag[@]}" bs=512 skip=$(($2 / 512)) count="$3" status=none | sha256sum | cut -d' ' -f1
}

step "EIO on exactly the bad range: the sectors next to it read fine, its own sectors fail"
# Nothing cached: each read reaches the daemon and errfs, whose read around the range fails as a
# whole; what is not in the range must still come back.
drop_caches
for at in $((BAD - 512)) $((BAD + 4096)); do
        assert_eq "$(sector_sha "$FL_TMP/data.bin" "$at" 1)" "$(sector_sha "$DEV" "$at" 1)" \
                "the sector at byte $at, next to the bad range"
done
drop_caches
assert_eq "$(sector_sha "$FL_TMP/data.bin" $((BAD - 65536)) 128)" "$(sector_sha "$DEV" $((BAD - 65536)) 128)" \
        "the 64 KiB that end where the bad range starts"
assert_eq "$(sector_sha "$FL_TMP/data.bin" $((BAD + 4096)) 128)" "$(sector_sha "$DEV" $((BAD + 4096)) 128)" \
        "the 64 KiB that start where the bad range ends"
for at in $BAD $((BAD + 4096 - 512)); do
        expect_failure 'input/output error' dd if="$DEV" iflag=direct bs=512 skip=$((at / 512)) count=1 of=/dev/null
done
alive "$FL_DAEMON_PID" || fail "fuseloopd died"

step "the daemon and the other mapping are unaffected"
assert_eq "$(sha256_of "$FL_TMP/good.bin")" "$(sha256_direct "$GOOD")" "content of $GOOD"
assert_eq 0 "$(get_prop good ReadErrors)" "ReadErrors of the good mapping"
assert_eq "$(sha256_head "$FL_TMP/data.bin" 65536)" \
        "$(dd if="$DEV" iflag=direct bs=64k count=1 status=none | sha256sum | cut -d' ' -f1)" \
        "first 64 KiB of $DEV after the error"

step "unmap both, stop errfs"
ctl unmap failing
ctl unmap good
assert_nothing_left failing
assert_nothing_left good
kill -TERM "$ERRFS"
wait_for 10 "errfs to exit" not_alive "$ERRFS"
wait_for 5 "errfs to be unmounted" eval "! mountpoint -q '$FL_TMP/errfs'"
