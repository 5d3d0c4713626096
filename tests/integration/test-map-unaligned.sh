#!/bin/bash
# test-map-unaligned: a source whose size is not a multiple of 4096 (1 MiB + 1234 bytes): the
# device size is the source size rounded down to the 512-byte sector, and reading the whole
# device (buffered and O_DIRECT) gives exactly the source's bytes up to that size, without
# read errors.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

SIZE=$((1048576 + 1234))
EXPECT=$((SIZE / 512 * 512))
head -c "$SIZE" /dev/urandom >"$FL_TMP/odd.bin"
start_daemon

for how in ctl fd; do
        step "mapped with $how"
        if [ "$how" = ctl ]; then
                DEV=$(ctl_map odd "$FL_TMP/odd.bin")
        else
                OUT=$(flbus map-fd odd "$FL_TMP/odd.bin") || fail "Map with an fd failed: $OUT"
                DEV=${OUT#* }
        fi
        assert_eq "$EXPECT" "$(device_size "$DEV")" "size of $DEV for a $SIZE-byte source"
        drop_caches
        dd if="$DEV" of="$FL_TMP/read.bin" bs=4096 status=none || fail "reading $DEV failed"
        assert_eq "$EXPECT" "$(stat -c %s "$FL_TMP/read.bin")" "bytes read from $DEV"
        cmp -n "$EXPECT" "$FL_TMP/odd.bin" "$FL_TMP/read.bin" || fail "$DEV differs from the source"
        assert_eq "$(sha256_head "$FL_TMP/odd.bin" "$EXPECT")" \
                "$(dd if="$DEV" iflag=direct bs=512 status=none | sha256sum | cut -d' ' -f1)" \
                "sha256 of $DEV read with O_DIRECT"
        # The last sector alone, and the tail beyond the device end.
        assert_eq "$(dd if="$FL_TMP/odd.bin" bs=512 skip=$((EXPECT / 512 - 1)) count=1 status=none | sha256sum)" \
                "$(dd if="$DEV" bs=512 skip=$((EXPECT / 512 - 1)) count=1 iflag=direct status=none | sha256sum)" \
                "last sector of $DEV"
        assert_eq 0 "$(dd if="$DEV" bs=512 skip=$((EXPECT / 512)) status=none | wc -c)" "bytes past the end of $DEV"
        assert_eq 0 "$(get_prop odd ReadErrors)" "ReadErrors"
        ctl unmap odd
        assert_nothing_left odd
done
assert_nothing_mapped
