#!/bin/bash
# test-auth-denied: a plain unprivileged user (a real account made for the test, in no group that
# a rule names, no polkit agent, no logind session: polkit's allow_any "no" decides) may read
# everything (List, properties, GetManagedObjects, introspection, fuseloopctl list and status)
# but Map, MapURI and every form of Unmap of root's mapping are refused with
# org.freedesktop.DBus.Error.AccessDenied (not InteractiveAuthorizationRequired: the default is
# "no", not "ask"), and nothing is created or changed. A MapURI of a path that does not exist is
# refused the same way: the answer must not tell the user what exists where only root can look.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

ACCESS_DENIED=org.freedesktop.DBus.Error.AccessDenied
# What fuseloopctl prints: the error message only (no error name).
DENIED_MSG='denied|not allowed|may not|not authorized'

make_test_user U
# The user must be able to reach the data it tries to map.
make_data_file "$FL_TMP/data.bin" 3
mkdir -m 0700 "$FL_TMP/secret"
head -c $((1 << 20)) /dev/urandom >"$FL_TMP/secret/root-only.bin"
start_daemon
start_monitor
DEV=$(ctl_map owned-by-root "$FL_TMP/data.bin")
SUM=$(sha256_of "$FL_TMP/data.bin")

step "reading is open to everyone"
OUT=$(flbus_as "$U" list 2>&1) || fail "List as $U failed: $OUT"
assert_eq "owned-by-root	$(mapping_path owned-by-root)	$DEV	active	$((3 << 20))	$FL_TMP/data.bin" \
        "$OUT" "List() as $U"
OUT=$(flbus_as "$U" props owned-by-root 2>&1) || fail "GetAll as $U failed: $OUT"
assert_contains "$OUT" "Device=$DEV" "properties read by $U"
assert_contains "$OUT" "OwnerUID=0" "properties read by $U"
OUT=$(flbus_as "$U" managed-objects 2>&1) || fail "GetManagedObjects as $U failed: $OUT"
assert_contains "$OUT" "$(mapping_path owned-by-root) " "GetManagedObjects as $U"
OUT=$(as_user "$U" busctl --system --auto-start=no introspect "$FL_BUS" "$FL_PATH" 2>&1) ||
        fail "introspection as $U failed: $OUT"
assert_contains "$OUT" ".MapURI" "introspection as $U"
OUT=$(as_user "$U" busctl --system --auto-start=no get-property "$FL_BUS" "$(mapping_path owned-by-root)" \
        "$FL_MAPPING_IFACE" State 2>&1) || fail "Get(State) as $U failed: $OUT"
assert_eq 's "active"' "$OUT" "State read by $U with busctl"
OUT=$(ctl_as "$U" list 2>&1) || fail "fuseloopctl list as $U failed: $OUT"
assert_contains "$OUT" "owned-by-root" "fuseloopctl list as $U"
OUT=$(ctl_as "$U" status owned-by-root 2>&1) || fail "fuseloopctl status as $U failed: $OUT"
assert_contains "$OUT" "Device: $DEV" "fuseloopctl status as $U"

step "Map is refused"
expect_error "$ACCESS_DENIED" flbus_as "$U" map-fd by-user "$FL_TMP/data.bin"
expect_error "$ACCESS_DENIED" flbus_as "$U" map-fd by-user "$FL_TMP/data.bin" bind-to-caller=b:true
expect_error "$ACCESS_DENIED" flbus_as "$U" map-fd by-user "$FL_TMP/data.bin" partition-scan=b:true size=t:4096
# polkit's answer is "no", not "ask": the same with and without interactive authorization.
expect_failure "$DENIED_MSG" ctl_as "$U" map by-user "$FL_TMP/data.bin"
expect_failure "$DENIED_MSG" ctl_as "$U" map --bind by-user "$FL_TMP/data.bin"
assert_nothing_left by-user

step "MapURI is refused, whether the path exists, is readable by the user or not"
expect_error "$ACCESS_DENIED" flbus_as "$U" map-uri by-user-uri "$FL_TMP/data.bin"
expect_error "$ACCESS_DENIED" flbus_as "$U" map-uri by-user-uri "file://$FL_TMP/data.bin"
expect_error "$ACCESS_DENIED" flbus_as "$U" map-uri by-user-uri "$FL_TMP/secret/root-only.bin"
expect_error "$ACCESS_DENIED" flbus_as "$U" map-uri by-user-uri /etc/shadow
expect_error "$ACCESS_DENIED" flbus_as "$U" map-uri by-user-uri "$FL_TMP/secret/does-not-exist"
for ia in yes no; do
        expect_failure "$DENIED_MSG" as_user "$U" busctl --system --auto-start=no \
                --allow-interactive-authorization=$ia call "$FL_BUS" "$FL_PATH" "$FL_IFACE" \
                MapURI 'ssa{sv}' by-user-uri "$FL_TMP/data.bin" 0
done
assert_nothing_left by-user-uri

step "Unmap of root's mapping is refused in every form"
expect_error "$ACCESS_DENIED" flbus_as "$U" unmap owned-by-root
expect_error "$ACCESS_DENIED" flbus_as "$U" unmap "$DEV"
expect_error "$ACCESS_DENIED" flbus_as "$U" unmap owned-by-root lazy=b:true
expect_error "$ACCESS_DENIED" flbus_as "$U" unmap-object owned-by-root
expect_failure "$DENIED_MSG" ctl_as "$U" unmap owned-by-root
expect_failure "$DENIED_MSG" ctl_as "$U" unmap --lazy "$DEV"

step "nothing changed"
assert_eq owned-by-root "$(list_names)" "mappings after the refused calls"
assert_eq active "$(get_prop owned-by-root State)" "State of root's mapping"
assert_eq 0 "$(get_prop owned-by-root OwnerUID)" "OwnerUID of root's mapping"
assert_eq "$SUM" "$(sha256_of "$DEV")" "content of $DEV"
OUT=$(grep -v '^READY$' "$FL_MONITOR_LOG" | grep -v "^MappingAdded owned-by-root " || true)
[ -z "$OUT" ] || fail "signals after the refused calls: $OUT"
alive "$FL_DAEMON_PID" || fail "fuseloopd exited"

step "root unmaps"
ctl unmap owned-by-root
wait_signal 10 "^MappingRemoved owned-by-root $(mapping_path owned-by-root) unmapped$"
assert_nothing_left owned-by-root
assert_nothing_mapped
