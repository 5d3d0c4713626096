#!/bin/bash
# test-bus-fuzz: fuseloopd survives hostile bus input and stays correct. test-bus-fuzz.py sends,
# from a logged random seed, random and malformed calls to every method for a bounded time
# (wrong signatures, missing and extra arguments, odd and multi-megabyte strings, unknown and
# wrongly typed options, random variants, bad fds, 250 fds in one message, random object paths,
# abandoned calls), then a flood of Map calls of valid files and as many Unmap calls, then a
# spoofed NameOwnerChanged and a Map of one of the daemon's own FUSE files; every reply must be a
# success or a named error, the daemon the same process, and List() answering throughout.
# Afterwards the daemon holds as many fds as before, a normal map and unmap works with the right
# content, and nothing is left behind.
#
# It runs on a private system bus (lib.sh) whose limits let that input reach the daemon: the
# system bus's defaults disconnect a client that sends more than 16 fds in one message and refuse
# a connection's calls beyond 128 unanswered ones. Callers are root, so polkit is never asked.
#
# Environment (by hand): FUSELOOP_BUS_FUZZ_SEED=N repeats a run's calls (the seed is logged),
# FUSELOOP_BUS_FUZZ_SECONDS=S (default 30) of random calls, FUSELOOP_BUS_FUZZ_FLOOD=N (default
# 200) maps in the flood.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

SEED=${FUSELOOP_BUS_FUZZ_SEED:-$(od -A n -N 4 -t u4 /dev/urandom | tr -d ' ')}
FUZZ_SECONDS=${FUSELOOP_BUS_FUZZ_SECONDS:-30}
FLOOD=${FUSELOOP_BUS_FUZZ_FLOOD:-200}
log "random seed $SEED (repeat with FUSELOOP_BUS_FUZZ_SEED=$SEED)"

FL_PRIVATE_BUS_POLICY='  <limit name="max_message_unix_fds">512</limit>
  <limit name="max_incoming_unix_fds">65536</limit>
  <limit name="max_outgoing_unix_fds">65536</limit>
  <limit name="max_replies_per_connection">8192</limit>'
make_data_file "$FL_TMP/data.bin" 4
private_bus_start
start_daemon
PID=$FL_DAEMON_PID

daemon_fds() { find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }

# fuse_abort_run_dir: aborts the FUSE connection of every mount in the run directory. A daemon
# whose thread waits for one of its own FUSE files cannot be stopped otherwise, not even by
# SIGKILL: the request it waits for is one that only it would answer.
fuse_abort_run_dir() {
        local ctl=$FL_TMP/fusectl dev n=0

        mkdir -p "$ctl"
        mount -t fusectl fusectl "$ctl" || return 1
        while read -r dev; do
                [ -e "$ctl/${dev#0:}/abort" ] || continue
                echo 1 >"$ctl/${dev#0:}/abort" && n=$((n + 1))
        done < <(awk -v d="$FL_RUN_DIR/" 'index($5, d) == 1 { print $3 }' /proc/self/mountinfo)
        umount "$ctl"
        log "aborted $n FUSE connections of mounts in $FL_RUN_DIR"
}
fds_back_to() { [ "$(daemon_fds)" -eq "$1" ]; }

step "warm-up: one map and unmap, then the daemon's fds are counted"
OUT=$(flbus map-fd warm "$FL_TMP/data.bin")
flbus unmap warm
assert_nothing_left warm
ls -l "/proc/$PID/fd" >"$FL_TMP/fds-before.txt"
FDS=$(daemon_fds)
log "fuseloopd holds $FDS fds"

step "hostile calls for $FUZZ_SECONDS s, then a flood of $FLOOD maps (seed $SEED)"
"$PYTHON" -u "$(dirname "$0")/test-bus-fuzz.py" --seed "$SEED" --seconds "$FUZZ_SECONDS" --flood "$FLOOD" \
        --tmp "$FL_TMP" --daemon-pid "$PID" --run-dir "$FL_RUN_DIR" 8>&- || {
        if ! timeout 15 "$PYTHON" "$FL_LIB_DIR/flbus.py" list >/dev/null 2>&1; then
                log "fuseloopd does not answer List(): releasing it so that it can be stopped"
                fuse_abort_run_dir || log "could not abort the FUSE connections"
        fi
        fail "hostile calls broke a rule (above); repeat with FUSELOOP_BUS_FUZZ_SEED=$SEED"
}

step "the same daemon still serves, holds no more fds than before, and nothing is left"
alive "$PID" || fail "fuseloopd (pid $PID) is gone"
assert_eq "$PID" "$(owner_pid)" "pid of the owner of $FL_BUS"
assert_nothing_mapped
if ! wait_until 10 fds_back_to "$FDS"; then
        ls -l "/proc/$PID/fd" >"$FL_TMP/fds-after.txt"
        fail "fuseloopd holds $(daemon_fds) fds, $FDS before the hostile calls:"$'\n'"$(diff \
                <(awk '{ print $NF }' "$FL_TMP/fds-before.txt" | sort) \
                <(awk '{ print $NF }' "$FL_TMP/fds-after.txt" | sort) || true)"
fi

step "a normal map still works"
OUT=$(flbus map-fd after "$FL_TMP/data.bin")
DEV=${OUT#* }
assert_match '^/dev/loop[0-9]+$' "$DEV" "device of 'after'"
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_direct "$DEV")" "content of $DEV"
flbus unmap after
assert_nothing_left after
assert_nothing_mapped
assert_eq "$PID" "$(owner_pid)" "pid of the owner of $FL_BUS"
