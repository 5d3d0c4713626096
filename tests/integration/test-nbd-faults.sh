#!/bin/bash
# test-nbd-faults: NBD servers that fail. nbdkit's error filter: while its trigger file exists
# every read fails; the device gives EIO, ReadErrors counts them, the mapping stays active and
# serves again once the server does. The delay filter: a slow server with the timeout option gives
# EIO at the deadline (TimedOutReads) while another NBD mapping reads at full speed meanwhile. A
# server killed in the middle of reads: the reads in flight and every later one fail with EIO (no
# hang), SourceError says why, list shows "source failed", and unmap leaves nothing behind.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

command -v nbdkit >/dev/null || skip "nbdkit is not installed"

SIZE=$((16 << 20))
head -c "$SIZE" /dev/urandom >"$FL_TMP/data.img"
TRIGGER=$FL_TMP/fail-now

start_nbdkit ERR_PID "$FL_TMP/err.sock" --read-only --filter=error file "$FL_TMP/data.img" \
        error-pread=EIO error-pread-rate=100% error-pread-file="$TRIGGER"
start_nbdkit SLOW_PID "$FL_TMP/slow.sock" --read-only --filter=delay file "$FL_TMP/data.img" delay-read=4
start_nbdkit FAST_PID "$FL_TMP/fast.sock" --read-only file "$FL_TMP/data.img"
truncate -s 512M "$FL_TMP/big.img"
start_nbdkit DOOMED_PID "$FL_TMP/doomed.sock" --read-only file "$FL_TMP/big.img"
start_daemon

part_sha() { # DEV|FILE BLOCK(64k) COUNT
        local flag=()

        [ ! -b "$1" ] || flag=(iflag=direct)
        dd if="$1" "${flag[@]}" bs=64k skip="$2" count="$3" status=none | sha256sum | cut -d' ' -f1
}

step "an erroring server: EIO while it errs, counted, the mapping serves again afterwards"
EDEV=$(ctl_map erring "nbd+unix:///?socket=$FL_TMP/err.sock")
assert_eq "$(part_sha "$FL_TMP/data.img" 0 16)" "$(part_sha "$EDEV" 0 16)" "reads before the errors"
touch "$TRIGGER"
before=$(get_prop erring ReadErrors)
expect_failure 'input/output error' dd if="$EDEV" iflag=direct bs=64k skip=100 count=1 of=/dev/null
after=$(get_prop erring ReadErrors)
[ "$after" -gt "$before" ] || fail "ReadErrors did not grow ($before -> $after)"
assert_eq active "$(get_prop erring State)" "State while the server errs"
assert_eq "" "$(get_prop erring SourceError)" "SourceError: an erring server is still there"
rm -f "$TRIGGER"
assert_eq "$(part_sha "$FL_TMP/data.img" 100 16)" "$(part_sha "$EDEV" 100 16)" "reads after the errors"

step "a slow server: EIO at the deadline; another NBD mapping is not held up"
SDEV=$(ctl_map --timeout 1 slow "nbd+unix:///?socket=$FL_TMP/slow.sock")
FDEV=$(ctl_map fast "nbd+unix:///?socket=$FL_TMP/fast.sock")
start=$(now_ms)
# Exit statuses go to files: nothing here waits for a process that might not end.
(
        rc=0
        dd if="$SDEV" iflag=direct bs=4k skip=1000 count=1 of=/dev/null status=none 2>"$FL_TMP/slow.err" || rc=$?
        echo "$rc" >"$FL_TMP/slow.rc"
) &
sleep 0.2
# While the slow read waits, the fast mapping reads all of its 16 MiB.
fstart=$(now_ms)
assert_eq "$(sha256sum <"$FL_TMP/data.img" | cut -d' ' -f1)" \
        "$(dd if="$FDEV" iflag=direct bs=1M status=none | sha256sum | cut -d' ' -f1)" "fast mapping during the slow read"
log "the fast mapping read 16 MiB in $(($(now_ms) - fstart)) ms while the slow one waited"
[ ! -e "$FL_TMP/slow.rc" ] || fail "the slow read ended before the fast mapping finished (it should wait ~1 s)"
wait_for 20 "the slow read to end" test -s "$FL_TMP/slow.rc"
[ "$(cat "$FL_TMP/slow.rc")" -ne 0 ] || fail "the read of the slow server succeeded despite the 1 s timeout"
grep -qi 'input/output error' "$FL_TMP/slow.err" || fail "the slow read failed otherwise: $(cat "$FL_TMP/slow.err")"
log "the slow read failed after $(($(now_ms) - start)) ms"
[ "$(get_prop slow TimedOutReads)" -ge 1 ] || fail "TimedOutReads did not count the read"

step "a server killed in the middle of reads: EIO, no hang; SourceError; unmap leaves nothing"
DDEV=$(ctl_map doomed "nbd+unix:///?socket=$FL_TMP/doomed.sock")
assert_eq "" "$(get_prop doomed SourceError)" "SourceError before"
# Four readers go through 128 MiB each in 64 KiB reads the page cache has never seen, so that reads
# are in flight when the server dies; each ends at its first error.
for i in 0 1 2 3; do
        (
                rc=0
                for ((b = 100 + i * 2048; b < 100 + (i + 1) * 2048; b++)); do
                        dd if="$DDEV" iflag=direct bs=64k skip="$b" count=1 of=/dev/null status=none \
                                2>"$FL_TMP/doomed.$i" || { rc=$?; break; }
                done
                echo "$rc" >"$FL_TMP/doomed.rc.$i"
        ) &
done
sleep 0.5
for i in 0 1 2 3; do
        [ ! -e "$FL_TMP/doomed.rc.$i" ] || fail "reader $i ended before the server was killed"
done
stop_nbdkit "$DOOMED_PID"
for i in 0 1 2 3; do
        # A read in flight at the kill must end (with EIO) within seconds, not hang.
        wait_for 10 "reader $i to end" test -s "$FL_TMP/doomed.rc.$i"
        [ "$(cat "$FL_TMP/doomed.rc.$i")" -ne 0 ] || fail "reader $i read 128 MiB from a server killed half a second in"
        grep -qi 'input/output error' "$FL_TMP/doomed.$i" || fail "reader $i failed otherwise: $(cat "$FL_TMP/doomed.$i")"
done
expect_failure 'input/output error' dd if="$DDEV" iflag=direct bs=64k skip=200 count=1 of=/dev/null
wait_for 10 "SourceError" test -n "$(get_prop doomed SourceError)"
assert_contains "$(get_prop doomed SourceError)" "NBD server is gone" "SourceError"
assert_contains "$(ctl list)" "active (source failed)" "list"
assert_contains "$(ctl status doomed)" "Source error: the NBD server is gone" "status"
alive "$FL_DAEMON_PID" || fail "fuseloopd died"

step "unmap everything"
for n in erring slow fast doomed; do
        ctl unmap "$n"
        assert_nothing_left "$n"
done
assert_nothing_mapped
