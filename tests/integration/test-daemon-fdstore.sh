#!/bin/bash
# test-daemon-fdstore: mappings survive kill -9 of the daemon through the service manager's fd
# store (played by tests/lib/fdstore.py, which speaks the sd_notify/sd_listen_fds protocol as
# systemd does). A partitioned image with ext4 mounted from the device, a MapURI mapping and a
# bind-to-caller mapping are kept in the store (3 fds each); the daemon is killed with SIGKILL,
# the page cache dropped and every file read while no daemon runs (the reads wait); the daemon
# started again with the stored fds resumes the same FUSE connections: the reads complete with
# the right content, List shows the same mappings, devices and object paths, the caller binding
# still holds. A second kill lands in the middle of a long read of the device (requests in
# flight are sent again by the kernel). A mapping whose loop device was detached while no
# daemon ran cannot be resumed: it is reported and cleaned up, and its fds leave the store.
# Finally everything unmaps cleanly and the store is empty.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

make_tree "$FL_TMP/tree1"
make_tree "$FL_TMP/tree2"
mkgpt "$FL_TMP/gpt.img" "$FL_TMP/tree1" "$FL_TMP/tree2"
make_data_file "$FL_TMP/raw.bin" 48
RAW_SHA=$(sha256_of "$FL_TMP/raw.bin")
make_data_file "$FL_TMP/gone.bin" 2

fdstore_start
start_daemon
FIRST=$FL_DAEMON_PID

step "map three mappings, mount the ext4 partition"
# Reads through the daemon (no passthrough): they are what must wait while no daemon runs.
DEV=$(ctl_map --passthrough=off --partscan --untrusted gpt "$FL_TMP/gpt.img")
RAW_DEV=$(flbus map-uri raw "$FL_TMP/raw.bin" mount-point=s:/mnt/raw passthrough=b:false)
RAW_DEV=${RAW_DEV#* }
# Bound to a caller that stays connected across the restart (the bus does not restart).
"$FUSELOOPCTL" map --bind bound "$FL_TMP/raw.bin" >"$FL_TMP/bound.dev" 2>"$FL_TMP/bound.err" &
BOUND_PID=$!
FL_PIDS+=("$BOUND_PID")
wait_for 10 "the bound mapping" mapping_listed bound
wait_for 10 "fuseloopctl --bind to print the device" test -s "$FL_TMP/bound.dev"
BOUND_DEV=$(cat "$FL_TMP/bound.dev")
GONE_DEV=$(ctl_map gone "$FL_TMP/gone.bin")
wait_fdstore 12
fdstore_names | grep -c -- '-fuse$' | grep -qx 4 || fail "not one FUSE fd per mapping in the store: $(fdstore_names)"
mount_ro "${DEV}p1" "$FL_TMP/mnt" ext4
check_tree "$FL_TMP/mnt" "$FL_TMP/tree1"
BEFORE=$(flbus list | sort)
PATHS_BEFORE=$(busctl_ tree --list "$FL_BUS" | grep "^$FL_PATH/mapping/" | sort)

step "kill -9 the daemon; detach one mapping's device while no daemon runs"
stop_daemon KILL
wait_for 5 "release of $FL_BUS" no_owner
assert_eq "$FL_RUN_DIR/gpt" "$(backing_file "$DEV")" "backing file of $DEV with the daemon dead"
losetup -d "$GONE_DEV"
wait_for 10 "$GONE_DEV to be detached" loop_released "$GONE_DEV"
drop_caches
# Reads now wait for a daemon: start them, they must neither fail nor finish.
(cd "$FL_TMP/mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$FL_TMP/during.sha256" 2>"$FL_TMP/during.err" &
READER=$!
FL_PIDS+=("$READER")
sha256_direct "$RAW_DEV" >"$FL_TMP/raw-during.sha256" 2>"$FL_TMP/raw-during.err" &
RAW_READER=$!
FL_PIDS+=("$RAW_READER")
sleep 1
alive "$READER" || fail "a read of the mounted file system finished while no daemon ran: $(cat "$FL_TMP/during.err")"
alive "$RAW_READER" || fail "a read of $RAW_DEV finished while no daemon ran"

step "start again with the stored fds: the waiting reads complete"
LOGLINES=$(wc -l <"$FL_DAEMON_LOG")
start_daemon
assert_ne "$FIRST" "$FL_DAEMON_PID" "pid of the restarted daemon"
wait_for 30 "the reads to complete" not_alive "$READER"
wait "$READER" || fail "reading the mounted file system across the restart failed: $(cat "$FL_TMP/during.err")"
wait_for 30 "the read of $RAW_DEV to complete" not_alive "$RAW_READER"
wait "$RAW_READER" || fail "reading $RAW_DEV across the restart failed: $(cat "$FL_TMP/raw-during.err")"
(cd "$FL_TMP/tree1" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$FL_TMP/expected.sha256"
assert_eq "$(cat "$FL_TMP/expected.sha256")" "$(cat "$FL_TMP/during.sha256")" "files read across the restart"
assert_eq "$RAW_SHA" "$(cat "$FL_TMP/raw-during.sha256")" "$RAW_DEV read across the restart"
tail -n +"$((LOGLINES + 1))" "$FL_DAEMON_LOG" >"$FL_TMP/second.log"
grep -F "Mapping 'gone' cannot be resumed" "$FL_TMP/second.log" ||
        fail "the restarted daemon does not report the mapping it could not resume"
grep -F "Resumed 3 of 4 mappings" "$FL_TMP/second.log" || fail "the restarted daemon does not say what it resumed"

step "the same mappings, devices and objects; the unresumable one is gone"
AFTER=$(flbus list | sort)
assert_eq "$(grep -v '^gone' <<<"$BEFORE")" "$AFTER" "List() after the restart"
assert_eq "$(grep -v "/gone$" <<<"$PATHS_BEFORE")" "$(busctl_ tree --list "$FL_BUS" | grep "^$FL_PATH/mapping/" | sort)" \
        "mapping objects after the restart"
assert_nothing_left gone
wait_fdstore 9
fdstore_names | grep -q -- "-record$" || fail "no record in the store"
assert_eq 0 "$(get_prop gpt ReadErrors)" "ReadErrors of gpt"
check_tree "$FL_TMP/mnt" "$FL_TMP/tree1"
# Options that only the record carries came back too.
assert_eq true "$(get_prop gpt Untrusted)" "Untrusted of gpt after the restart"
assert_eq false "$(get_prop raw Untrusted)" "Untrusted of raw after the restart"
assert_eq /mnt/raw "$(get_prop raw MountPoint)" "MountPoint of raw after the restart"
assert_eq "" "$(get_prop gpt MountPoint)" "MountPoint of gpt after the restart"

step "kill -9 in the middle of a long read of the device"
drop_caches
dd if="$RAW_DEV" iflag=direct bs=64k status=none | sha256sum | cut -d' ' -f1 >"$FL_TMP/raw-inflight.sha256" &
INFLIGHT=$!
FL_PIDS+=("$INFLIGHT")
sleep 0.3
alive "$INFLIGHT" || log "the read finished before the kill (a fast machine); it still must be right"
stop_daemon KILL
start_daemon
wait_for 30 "the interrupted read to complete" not_alive "$INFLIGHT"
wait "$INFLIGHT" || fail "the read interrupted by kill -9 failed"
assert_eq "$RAW_SHA" "$(cat "$FL_TMP/raw-inflight.sha256")" "$RAW_DEV read across a kill in mid-read"
check_tree "$FL_TMP/mnt" "$FL_TMP/tree1"

step "the caller binding survives: ending the caller unmaps"
assert_eq "$BOUND_DEV" "$(flbus list | awk -F'\t' '$1 == "bound" { print $3 }')" "device of 'bound'"
kill "$BOUND_PID"
wait "$BOUND_PID" || true
wait_for 10 "'bound' to be unmapped when its caller ended" mapping_not_listed bound
assert_nothing_left bound

step "unmap the rest: nothing left, the store is empty"
umount_tracked "$FL_TMP/mnt"
ctl unmap gpt
ctl unmap raw
assert_nothing_left gpt
assert_nothing_left raw
assert_nothing_mapped
wait_fdstore 0
stop_daemon TERM
assert_eq 0 "$FL_DAEMON_STATUS" "exit status after SIGTERM"
