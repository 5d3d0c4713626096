#!/bin/bash
# test-daemon-sigterm: SIGTERM with one idle mapping: the mapping is removed (MappingRemoved with
# reason "shutdown"), the daemon exits 0 and nothing is left.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

NAME=idle
head -c $((4 << 20)) /dev/urandom >"$FL_TMP/data.bin"
start_daemon
start_monitor
DEV=$(ctl_map "$NAME" "$FL_TMP/data.bin")
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_of "$DEV")" "content of $DEV"

step "SIGTERM"
stop_daemon TERM 30
assert_eq 0 "$FL_DAEMON_STATUS" "exit status after SIGTERM"
wait_signal 5 "^MappingRemoved $NAME $(mapping_path "$NAME") shutdown\$"
assert_eq "" "$(backing_file "$DEV")" "backing file of $DEV after shutdown"
assert_nothing_left "$NAME"
