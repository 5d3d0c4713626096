#!/bin/bash
# test-daemon-resend: a read that the daemon had taken from the kernel but not answered when it
# was killed is answered by the next daemon. The source is errfs, whose reads of one range wait
# while a gate file exists: a read of the device reaches the daemon, which takes the FUSE request
# and reads errfs; errfs holds it; the daemon is killed with SIGKILL (the request is now in the
# kernel's "being processed" list of the FUSE connection, which lives on in the fd store of
# tests/lib/fdstore.py); the gate is removed; the daemon started again with the stored fds has the
# kernel send that request again (FUSE_NOTIFY_RESEND) and answers it: the read completes with the
# right data. Without the resend it would wait forever.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

SIZE=$((4 << 20))
STALL=$((2560 << 10))   # far from what udev's probes and readahead of the start touch
GATE=$FL_TMP/gate
head -c "$SIZE" /dev/urandom >"$FL_TMP/data.bin"
start_errfs "$FL_TMP/data.bin" 0 0 "$STALL" 4096 "$GATE"

fdstore_start
start_daemon
DEV=$(ctl_map held "$FL_TMP/errfs/data")
wait_fdstore 3
EXPECTED=$(dd if="$FL_TMP/data.bin" bs=4096 skip=$((STALL / 4096)) count=1 status=none | sha256sum | cut -d' ' -f1)

step "a read of the held range reaches the daemon and waits in errfs"
touch "$GATE"
drop_caches
dd if="$DEV" iflag=direct bs=4096 skip=$((STALL / 4096)) count=1 of="$FL_TMP/held.bin" status=none \
        2>"$FL_TMP/dd.err" 8>&- &
DD=$!
FL_PIDS+=("$DD")
wait_for 10 "errfs to hold the daemon's read" grep -q '^stall ' "$FL_TMP/errfs.log"
alive "$DD" || fail "the read did not wait: $(cat "$FL_TMP/dd.err")"

step "kill -9 the daemon while it holds the request; release errfs"
stop_daemon KILL
rm -f "$GATE"
wait_for 10 "errfs to let the dead daemon's read go" grep -q '^release ' "$FL_TMP/errfs.log"
sleep 0.5
alive "$DD" || fail "the read ended while no daemon ran: $(cat "$FL_TMP/dd.err")"

step "the next daemon answers the request it never saw"
start_daemon
if ! wait_until 20 not_alive "$DD"; then
        # Nobody will ever answer the lost request. End the FUSE connection (every fd of it: the
        # daemon's and the store's), so that the read fails instead of hanging the cleanup.
        fl_stop_daemon KILL 5 || true
        kill "$FL_FDSTORE_PID"
        wait "$FL_FDSTORE_PID" || true
        fail "the read taken by the killed daemon is still not answered 20 s after the restart"
fi
wait "$DD" || fail "the read taken by the killed daemon failed: $(cat "$FL_TMP/dd.err")"
assert_eq "$EXPECTED" "$(sha256_of "$FL_TMP/held.bin")" "data of the read answered after the restart"
assert_eq 0 "$(get_prop held ReadErrors)" "ReadErrors after the restart"
! grep -F "cannot resend requests" "$FL_DAEMON_LOG" || fail "the kernel refused FUSE_NOTIFY_RESEND"

step "unmap: nothing left, the store empty"
ctl unmap held
assert_nothing_left held
assert_nothing_mapped
wait_fdstore 0
