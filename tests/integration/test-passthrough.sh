#!/bin/bash
# test-passthrough: a regular-file source is read by the kernel itself (FUSE passthrough) where
# the kernel offers it: ReadPath is "passthrough", the content is right (sha256), also with an
# offset and a size (which the loop device then applies: lo_offset, lo_sizelimit), and the reads
# never reach the daemon (ReadRequests stays 0 while the kernel counts them). --passthrough=off,
# the timeout option and a source on FUSE keep reads in the daemon ("daemon"), where the loop
# device reads with direct I/O unless --direct-io=off (DirectIO, the kernel's dio flag). A restart (kill -9,
# resumed from the fd store) keeps passthrough, and the FUSE file still opens and reads.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

SIZE=$((32 << 20))
head -c "$SIZE" /dev/urandom >"$FL_TMP/data.img"
sha() { sha256sum | cut -d' ' -f1; }
dev_sha() { dd if="$1" bs=1M iflag=direct status=none | sha; }

fdstore_start
start_daemon

step "a file source: passthrough, right content, no read through the daemon"
DEV=$(ctl_map pt "$FL_TMP/data.img")
PATH_KIND=$(get_prop pt ReadPath)
if [ "$PATH_KIND" != passthrough ]; then
        # Only kernels without FUSE passthrough (before 6.9, or built without it) get here.
        grep -q "passthrough" "$FL_DAEMON_LOG" || fail "ReadPath is '$PATH_KIND' and the daemon did not say why"
        skip "the kernel offers no FUSE passthrough ($(uname -r)): $(grep -m1 passthrough "$FL_DAEMON_LOG")"
fi
assert_eq "$(sha <"$FL_TMP/data.img")" "$(dev_sha "$DEV")" "content of $DEV"
assert_eq 0 "$(get_prop pt ReadRequests)" "reads that reached the daemon"
[ "$(get_prop pt KernelReadBytes)" -ge "$SIZE" ] || fail "the kernel counted $(get_prop pt KernelReadBytes) bytes, less than $SIZE"
assert_eq -1 "$(get_prop pt CacheHitRatio)" "CacheHitRatio without reads through the daemon"
assert_contains "$(ctl status pt)" "Read path: passthrough" "status"
# The loop device reads the FUSE file buffered: the source's page cache serves, as for a loop
# device on the file itself.
assert_eq false "$(get_prop pt DirectIO)" "DirectIO with passthrough"
assert_eq 0 "$(cat "/sys/block/${DEV#/dev/}/loop/dio")" "the kernel's dio flag with passthrough"

step "offset and size: the loop device applies them to the whole file"
ODEV=$(ctl_map --offset $((3 << 20)) --size $((5 << 20)) ptpart "$FL_TMP/data.img")
assert_eq passthrough "$(get_prop ptpart ReadPath)" "ReadPath with an offset"
assert_eq $((5 << 20)) "$(device_size "$ODEV")" "size of $ODEV"
assert_eq "$(dd if="$FL_TMP/data.img" bs=1M skip=3 count=5 status=none | sha)" "$(dev_sha "$ODEV")" "content of $ODEV"
N=${ODEV#/dev/loop}
assert_eq $((3 << 20)) "$(cat "/sys/block/loop$N/loop/offset")" "lo_offset"
assert_eq $((5 << 20)) "$(cat "/sys/block/loop$N/loop/sizelimit")" "lo_sizelimit"
assert_eq 0 "$(get_prop ptpart ReadRequests)" "reads that reached the daemon"

step "--passthrough=off, a timeout, a source on FUSE: the daemon reads"
FDEV=$(ctl_map --passthrough=off nopt "$FL_TMP/data.img")
assert_eq daemon "$(get_prop nopt ReadPath)" "ReadPath with passthrough off"
assert_eq "$(sha <"$FL_TMP/data.img")" "$(dev_sha "$FDEV")" "content of $FDEV"
[ "$(get_prop nopt ReadRequests)" -gt 0 ] || fail "no read reached the daemon with passthrough off"
# Through the daemon the loop device reads with direct I/O unless told otherwise: no second copy
# in the FUSE file's page cache.
assert_eq true "$(get_prop nopt DirectIO)" "DirectIO by default on the daemon's read path"
assert_eq 1 "$(cat "/sys/block/${FDEV#/dev/}/loop/dio")" "the kernel's dio flag on the daemon's read path"
assert_eq -1 "$(get_prop nopt CacheHitRatio)" "CacheHitRatio with direct I/O"
BDEV=$(ctl_map --passthrough=off --direct-io=off buffered "$FL_TMP/data.img")
assert_eq false "$(get_prop buffered DirectIO)" "DirectIO with --direct-io=off"
assert_eq 0 "$(cat "/sys/block/${BDEV#/dev/}/loop/dio")" "the kernel's dio flag with --direct-io=off"
assert_eq "$(sha <"$FL_TMP/data.img")" "$(dev_sha "$BDEV")" "content of $BDEV"
ctl unmap buffered
TDEV=$(ctl_map --timeout 5 timed "$FL_TMP/data.img")
assert_eq daemon "$(get_prop timed ReadPath)" "ReadPath with a timeout"
assert_eq "$(sha <"$FL_TMP/data.img")" "$(dev_sha "$TDEV")" "content of $TDEV"
# A mapping's own FUSE file as a source: a file on FUSE.
RDEV=$(ctl_map onfuse "$FL_RUN_DIR/pt")
assert_eq daemon "$(get_prop onfuse ReadPath)" "ReadPath of a source on FUSE"
assert_eq "$(sha <"$FL_TMP/data.img")" "$(dev_sha "$RDEV")" "content of $RDEV"
ctl unmap onfuse

step "kill -9 and restart: passthrough goes on, new opens of the FUSE file work"
stop_daemon KILL
start_daemon
assert_eq passthrough "$(get_prop pt ReadPath)" "ReadPath after the restart"
drop_caches
assert_eq "$(sha <"$FL_TMP/data.img")" "$(dev_sha "$DEV")" "content of $DEV after the restart"
assert_eq "$(sha <"$FL_TMP/data.img")" "$(sha <"$FL_RUN_DIR/pt")" "a new open of the FUSE file after the restart"
assert_eq 0 "$(get_prop pt ReadRequests)" "reads that reached the restarted daemon"
assert_eq "$(dd if="$FL_TMP/data.img" bs=1M skip=3 count=5 status=none | sha)" "$(dev_sha "$ODEV")" \
        "content of $ODEV after the restart"

step "unmap"
for n in pt ptpart nopt timed; do
        ctl unmap "$n"
        assert_nothing_left "$n"
done
assert_nothing_mapped
