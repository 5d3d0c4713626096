#!/bin/bash
# test-daemon-idle: with --idle-timeout 3, the daemon exits by itself, with status 0 and after
# releasing its bus name, once it has had no mappings and no incoming method calls for 3 s. A
# mapping keeps it running however long no call comes; after the last mapping is unmapped it
# waits the full timeout again. Calls reset the countdown: List every second keeps it alive well
# past the timeout, so do property reads (Properties.GetAll) and GetManagedObjects; calls it
# refuses (a user's Map) count as calls too.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

IDLE=3
make_data_file "$FL_TMP/data.img" 1
SUM=$(sha256_of "$FL_TMP/data.img")
FL_DAEMON_ARGS=(--idle-timeout "$IDLE")

# expect_idle_exit SINCE_MS: the daemon exits by itself within 3 * IDLE + 5 s, with status 0, not
# earlier than IDLE - 0.5 s after SINCE_MS (the start of the last call), releases the name and
# leaves nothing behind.
expect_idle_exit() {
        local since=$1 waited

        wait_daemon_exit $((3 * IDLE + 5))
        waited=$((FL_DAEMON_EXIT_MS - since))
        log "fuseloopd exited ${waited} ms after the last call"
        assert_eq 0 "$FL_DAEMON_STATUS" "exit status of the idle exit"
        [ "$waited" -ge $((IDLE * 1000 - 500)) ] ||
                fail "fuseloopd exited ${waited} ms after the last call, before the idle timeout of ${IDLE}s"
        wait_for 5 "release of $FL_BUS" no_owner
        assert_run_dir_clean
        grep -q "No mappings and no calls" "$FL_DAEMON_LOG" || log "(the daemon logged no reason for its exit)"
}

# stays_alive SECONDS COMMAND...: runs COMMAND every second for SECONDS seconds; the daemon must
# keep running (and owning the name) all along. Leaves the time of the last call's start in
# LAST_CALL_MS.
stays_alive() {
        local secs=$1 i

        shift
        for ((i = 0; i < secs; i++)); do
                LAST_CALL_MS=$(now_ms)
                "$@" >/dev/null || fail "'$*' failed"
                alive "$FL_DAEMON_PID" || fail "fuseloopd exited $((i + 1)) s into calling '$*' every second"
                sleep 1
        done
        alive "$FL_DAEMON_PID" || fail "fuseloopd exited while '$*' was called every second"
        assert_eq "$FL_DAEMON_PID" "$(owner_pid)" "owner of $FL_BUS"
}

step "a mapping keeps the daemon alive"
start_daemon
DEV=$(ctl_map idle-map "$FL_TMP/data.img")
sleep $((3 * IDLE))
alive "$FL_DAEMON_PID" || fail "fuseloopd exited while it had a mapping"
has_owner || fail "fuseloopd released its name while it had a mapping"
assert_eq "$SUM" "$(sha256_of "$DEV")" "sha256 of $DEV after $((3 * IDLE)) s without calls"

step "after the unmap it waits the full timeout, then exits"
T=$(now_ms)
ctl unmap idle-map
assert_nothing_left idle-map
sleep 1.5
alive "$FL_DAEMON_PID" || fail "fuseloopd exited less than 1.5 s after the unmap (idle timeout ${IDLE}s)"
expect_idle_exit "$T"

step "List every second keeps it alive"
start_daemon
stays_alive $((2 * IDLE)) flbus list
expect_idle_exit "$LAST_CALL_MS"

step "property reads and GetManagedObjects keep it alive"
start_daemon
stays_alive $((2 * IDLE)) busctl_ call "$FL_BUS" "$FL_PATH" org.freedesktop.DBus.Properties GetAll s "$FL_IFACE"
stays_alive $((2 * IDLE)) flbus managed-objects
expect_idle_exit "$LAST_CALL_MS"

step "refused calls count as calls"
make_test_user U
start_daemon
stays_alive $((2 * IDLE)) expect_error org.freedesktop.DBus.Error.AccessDenied flbus_as "$U" map-fd by-user "$FL_TMP/data.img"
expect_idle_exit "$LAST_CALL_MS"
