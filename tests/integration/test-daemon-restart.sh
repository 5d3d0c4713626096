#!/bin/bash
# test-daemon-restart: with nothing mapped, SIGTERM stops the daemon cleanly (exit 0, name
# released, nothing left); started again it works normally; a second instance cannot take over
# the name while the first runs.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

head -c $((2 << 20)) /dev/urandom >"$FL_TMP/data.bin"

step "first start, stop with nothing mapped"
start_daemon
assert_eq "" "$(list_names)" "List() of a fresh daemon"
stop_daemon TERM
assert_eq 0 "$FL_DAEMON_STATUS" "exit status after SIGTERM with nothing mapped"

step "start again: works"
start_daemon
DEV=$(ctl_map after-restart "$FL_TMP/data.bin")
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_of "$DEV")" "content of $DEV"
ctl unmap after-restart
assert_nothing_left after-restart

step "a second instance does not steal the name"
FIRST=$FL_DAEMON_PID
run_second_daemon
assert_ne 0 "$SECOND_STATUS" "exit status of a second instance"
assert_eq "$FIRST" "$(owner_pid)" "owner of $FL_BUS"
DEV=$(ctl_map still-first "$FL_TMP/data.bin")
ctl unmap still-first

step "stop again"
stop_daemon TERM
assert_eq 0 "$FL_DAEMON_STATUS" "exit status after SIGTERM"
