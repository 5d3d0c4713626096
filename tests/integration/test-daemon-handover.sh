#!/bin/bash
# test-daemon-handover: SIGTERM during a restart (systemctl restart, a package upgrade) leaves the
# mappings to the next instance; SIGTERM of a stop unmaps everything. systemd does not tell a
# service why it stops it, but shows the job queued for its unit on the bus: fuseloopd asks. PID 1
# of the test machine is not systemd, so the few calls it makes are answered by flbus.py
# fake-systemd on a private bus, from a file that says which job is queued; the fd store is
# tests/lib/fdstore.py, as in test-daemon-fdstore.
#   restart job: the daemon exits at once (status 0) without unmapping; the devices stay, the
#                mounted file system waits; the next daemon resumes them and every file reads
#                back right.
#   stop job, no job, or no systemd answering: a stop for good, nothing left, the store empty.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/ext4.img" 16M "$FL_TMP/tree"
make_data_file "$FL_TMP/raw.bin" 8
RAW_SHA=$(sha256_of "$FL_TMP/raw.bin")

FL_PRIVATE_BUS_POLICY='  <policy user="root">
    <allow own="org.freedesktop.systemd1"/>
  </policy>
  <policy context="default">
    <allow send_destination="org.freedesktop.systemd1"/>
  </policy>'
private_bus_start

start_fake_systemd() {
        : >"$FL_TMP/fake-systemd.log"
        "$PYTHON" -u "$FL_LIB_DIR/flbus.py" fake-systemd "$FL_TMP/job" >>"$FL_TMP/fake-systemd.log" 2>&1 8>&- &
        FAKE_SYSTEMD=$!
        FL_PIDS+=("$FAKE_SYSTEMD")
        wait_for 10 "the fake systemd" grep -q '^READY$' "$FL_TMP/fake-systemd.log"
}
start_fake_systemd

fdstore_start
start_daemon

step "map, mount"
# Reads through the daemon (no passthrough): they are what must wait during the handover.
DEV=$(ctl_map --passthrough=off ext4 "$FL_TMP/ext4.img")
RAW_DEV=$(ctl_map --passthrough=off raw "$FL_TMP/raw.bin")
wait_fdstore 6
mount_ro "$DEV" "$FL_TMP/mnt" ext4
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
BEFORE=$(flbus list | sort)

step "SIGTERM with a restart job queued: the daemon leaves its mappings to the next one"
echo restart >"$FL_TMP/job"
LOGLINES=$(wc -l <"$FL_DAEMON_LOG")
fl_stop_daemon TERM 10 || fail "the daemon did not exit within 10 s of SIGTERM during a restart"
assert_eq 0 "$FL_DAEMON_STATUS" "exit status after SIGTERM during a restart"
grep -q "^CALL GetUnitByPID " "$FL_TMP/fake-systemd.log" || fail "the daemon did not ask systemd for its unit"
tail -n +"$((LOGLINES + 1))" "$FL_DAEMON_LOG" | grep -F "A restart of fuseloopd is queued" ||
        fail "the daemon does not say that it leaves its mappings to the next instance"
assert_eq "$FL_RUN_DIR/ext4" "$(backing_file "$DEV")" "backing file of $DEV between the two instances"
assert_eq "$FL_RUN_DIR/raw" "$(backing_file "$RAW_DEV")" "backing file of $RAW_DEV between the two instances"
fdstore_has 6 || fail "the fd store lost fds at the restart: $(fdstore_names)"
drop_caches
(cd "$FL_TMP/mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$FL_TMP/during.sha256" 2>"$FL_TMP/during.err" &
READER=$!
FL_PIDS+=("$READER")
sleep 0.5
alive "$READER" || fail "a read finished while no daemon ran: $(cat "$FL_TMP/during.err")"

step "the next instance resumes them"
start_daemon
wait_for 30 "the waiting reads" not_alive "$READER"
wait "$READER" || fail "reading across the restart failed: $(cat "$FL_TMP/during.err")"
(cd "$FL_TMP/tree" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$FL_TMP/expected.sha256"
assert_eq "$(cat "$FL_TMP/expected.sha256")" "$(cat "$FL_TMP/during.sha256")" "files read across the restart"
assert_eq "$BEFORE" "$(flbus list | sort)" "List() after the restart"
assert_eq "$RAW_SHA" "$(sha256_of "$RAW_DEV")" "content of $RAW_DEV after the restart"

step "SIGTERM with a stop job queued: a stop for good"
echo stop >"$FL_TMP/job"
umount_tracked "$FL_TMP/mnt"
stop_daemon TERM
assert_eq 0 "$FL_DAEMON_STATUS" "exit status after SIGTERM of a stop"
assert_nothing_left ext4
assert_nothing_left raw
wait_fdstore 0

step "no systemd on the bus: SIGTERM stops for good"
kill "$FAKE_SYSTEMD"
wait "$FAKE_SYSTEMD" || true
start_daemon
DEV=$(ctl_map raw "$FL_TMP/raw.bin")
wait_fdstore 3
stop_daemon TERM
assert_eq 0 "$FL_DAEMON_STATUS" "exit status after SIGTERM without systemd"
assert_nothing_left raw
wait_fdstore 0
