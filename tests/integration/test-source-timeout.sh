#!/bin/bash
# test-source-timeout: a mapping with the timeout option (2 s) whose source stalls (errfs holds
# every read of one range until a gate file is removed): a read of that range fails with EIO
# after about the timeout, read with O_DIRECT so that no page cache hides it, and is counted in
# TimedOutReads and ReadErrors; the mapping is Stalled while the source holds the read; reads
# outside the range still return the right data and the daemon answers within 1 s. Unmap goes
# ahead while the source still holds reads (the loop device is detached at once, the daemon
# keeps answering) and completes once the source gives them back; nothing is left behind. A
# timeout above the maximum is refused.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

SIZE=$((4 << 20))
STALL=$((2560 << 10))   # 2.5 MiB: far from what udev's probes and readahead of the start touch
TIMEOUT=2
GATE=$FL_TMP/gate       # errfs holds reads of the stalled range while this file exists
head -c "$SIZE" /dev/urandom >"$FL_TMP/data.bin"
start_errfs "$FL_TMP/data.bin" 0 0 "$STALL" 4096 "$GATE"
start_daemon

# range_sha FILE BYTE BYTES: sha256 of BYTES bytes of FILE from BYTE on (both multiples of 512),
# read with O_DIRECT from a device.
range_sha() {
        local flag=()

        [ ! -b "$1" ] || flag=(iflag=direct)
        dd if="$1" "${flag[@]}" bs=512 skip=$(($2 / 512)) count=$(($3 / 512)) status=none | sha256sum | cut -d' ' -f1
}

step "a timeout above the maximum, or of the wrong type, is refused"
expect_error InvalidOption flbus map-uri too-long "$FL_TMP/data.bin" timeout=u:3601
assert_contains "$ERR_OUT" "'timeout' must be at most 3600 seconds" "InvalidOption message"
expect_error InvalidOption flbus map-fd too-long "$FL_TMP/data.bin" timeout=t:2
expect_failure "'timeout' must be at most 3600" ctl map --timeout 3601 too-long "$FL_TMP/data.bin"
expect_failure "invalid timeout" ctl map --timeout 2s too-long "$FL_TMP/data.bin"
assert_nothing_left too-long
assert_nothing_mapped

step "map the stalling source with a timeout of $TIMEOUT s"
# The gate is made only once it is mapped: udev's probes must not stall.
DEV=$(ctl_map --timeout "$TIMEOUT" slow "$FL_TMP/errfs/data")
assert_eq "$TIMEOUT" "$(get_prop slow Timeout)" "Timeout"
assert_contains "$(ctl status slow)" "Timeout: $TIMEOUT s" "fuseloopctl status"
assert_eq 0 "$(get_prop slow TimedOutReads)" "TimedOutReads of a fresh mapping"
ERRORS_BEFORE=$(get_prop slow ReadErrors)

step "a read of the stalled range fails with EIO after about the timeout"
touch "$GATE"
# Nothing cached: the read must reach the daemon and errfs.
drop_caches
START=$(now_ms)
expect_failure 'input/output error' dd if="$DEV" iflag=direct bs=4096 skip=$((STALL / 4096)) count=1 of=/dev/null
TOOK=$(($(now_ms) - START))
log "the read failed after $TOOK ms"
grep -q '^stall ' "$FL_TMP/errfs.log" || fail "errfs never held a read, so nothing timed out: $(cat "$FL_TMP/errfs.log")"
[ "$TOOK" -ge $((TIMEOUT * 1000 - 200)) ] || fail "the read failed after $TOOK ms, before the timeout of $TIMEOUT s"
# The kernel reads a page that readahead failed to fill once more on its own, so the reader may
# wait out the timeout twice.
[ "$TOOK" -le $((TIMEOUT * 2000 + 3000)) ] || fail "the read failed only after $TOOK ms (timeout $TIMEOUT s)"
TIMED_OUT=$(get_prop slow TimedOutReads)
ERRORS=$(get_prop slow ReadErrors)
[ "$TIMED_OUT" -ge 1 ] || fail "TimedOutReads is $TIMED_OUT after a read timed out"
[ $((ERRORS - ERRORS_BEFORE)) -ge "$TIMED_OUT" ] ||
        fail "ReadErrors grew by $((ERRORS - ERRORS_BEFORE)), less than TimedOutReads ($TIMED_OUT)"
assert_contains "$(ctl status slow)" "Timed-out reads: $TIMED_OUT" "fuseloopctl status"

step "the source still holds the read: the mapping is stalled"
wait_for 5 "Stalled to become true" prop_is slow Stalled true
assert_contains "$(ctl list --no-legend | awk '$1 == "slow"')" "active (stalled)" "the list row"
! grep -q '^release ' "$FL_TMP/errfs.log" || fail "errfs let a read go while the gate exists"
alive "$FL_DAEMON_PID" || fail "fuseloopd died"

step "reads outside the range return the right data; the daemon answers within 1 s"
answers_within 1000 "fuseloopctl list" ctl list
answers_within 1000 "busctl call List" busctl_ call "$FL_BUS" "$FL_PATH" "$FL_IFACE" List
head_sha() { dd if="$DEV" iflag=direct bs=64k count=32 status=none | sha256sum | cut -d' ' -f1 >"$FL_TMP/head.sha"; }
answers_within 1000 "reading and hashing the first 2 MiB of $DEV" head_sha
assert_eq "$(sha256_head "$FL_TMP/data.bin" $((2 << 20)))" "$(cat "$FL_TMP/head.sha")" "first 2 MiB of $DEV"
assert_eq "$(range_sha "$FL_TMP/data.bin" $((STALL + 4096)) 65536)" "$(range_sha "$DEV" $((STALL + 4096)) 65536)" \
        "the 64 KiB right after the stalled range"
# The sector right before the range comes back, also if the kernel's readahead for its page
# reaches into the range (that read times out, then the page alone is read again).
assert_eq "$(range_sha "$FL_TMP/data.bin" $((STALL - 512)) 512)" "$(range_sha "$DEV" $((STALL - 512)) 512)" \
        "the sector right before the stalled range"
expect_failure 'input/output error' dd if="$DEV" iflag=direct bs=512 skip=$(((STALL + 4096 - 512) / 512)) count=1 \
        of=/dev/null
assert_eq true "$(get_prop slow Stalled)" "Stalled while the source holds reads"

step "unmap while the source still holds the reads"
ctl unmap slow >"$FL_TMP/unmap.out" 2>&1 8>&- &
UNMAP=$!
FL_PIDS+=("$UNMAP")
wait_for 10 "the loop device to be detached" loop_released "$DEV"
# The source cannot be closed under a read it holds: the mapping waits for it, answering all the
# while.
answers_within 1000 "fuseloopctl list" ctl list
log "while unmapping: $(ctl list --no-legend | awk '$1 == "slow"')"
alive "$FL_DAEMON_PID" || fail "fuseloopd died"

step "release the source: the unmap completes and nothing is left"
rm -f "$GATE"
wait_for 10 "the unmap to complete" not_alive "$UNMAP"
UNMAP_STATUS=0
wait "$UNMAP" || UNMAP_STATUS=$?
forget_pid "$UNMAP"
[ "$UNMAP_STATUS" -eq 0 ] || fail "fuseloopctl unmap failed (status $UNMAP_STATUS): $(cat "$FL_TMP/unmap.out")"
grep -q '^release ' "$FL_TMP/errfs.log" || fail "errfs released no read"
assert_nothing_left slow
assert_nothing_mapped
alive "$FL_DAEMON_PID" || fail "fuseloopd died"
kill -TERM "$ERRFS"
wait_for 10 "errfs to exit" not_alive "$ERRFS"
wait_for 5 "errfs to be unmounted" eval "! mountpoint -q '$FL_TMP/errfs'"
