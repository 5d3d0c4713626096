#!/bin/bash
# test-bus-own: the installed bus policy lets only root own org.proxmox.FuseLoop1 on the system
# bus. An unprivileged user's RequestName is refused with org.freedesktop.DBus.Error.AccessDenied,
# both while the name is free and while the daemon owns it (also with REPLACE_EXISTING, which
# must leave the daemon the owner); root may take the free name (the policy, not something else,
# is what refuses the user).
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

ACCESS_DENIED=org.freedesktop.DBus.Error.AccessDenied

make_test_user U
no_owner || fail "$FL_BUS is owned before the test"

step "the free name: the user is refused, root may own it"
expect_error "$ACCESS_DENIED" flbus_as "$U" request-name "$FL_BUS"
expect_error "$ACCESS_DENIED" flbus_as "$U" request-name "$FL_BUS" --replace
no_owner || fail "$FL_BUS got an owner after the refused requests (pid $(owner_pid))"
OUT=$(flbus request-name "$FL_BUS") || fail "root could not own $FL_BUS: $OUT"
assert_eq primary-owner "$OUT" "RequestName by root"
wait_for 5 "root's test client to release $FL_BUS" no_owner

step "while the daemon owns it: the user is refused and cannot take it over"
start_daemon
expect_error "$ACCESS_DENIED" flbus_as "$U" request-name "$FL_BUS"
expect_error "$ACCESS_DENIED" flbus_as "$U" request-name "$FL_BUS" --replace
assert_eq "$FL_DAEMON_PID" "$(owner_pid)" "owner of $FL_BUS after the refused requests"
OUT=$(flbus list) || fail "List failed after the refused requests: $OUT"
alive "$FL_DAEMON_PID" || fail "fuseloopd exited"
stop_daemon TERM
assert_eq 0 "$FL_DAEMON_STATUS" "exit status after SIGTERM"
