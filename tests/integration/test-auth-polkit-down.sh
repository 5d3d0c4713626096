#!/bin/bash
# test-auth-polkit-down: when polkit cannot be asked, nothing that needs it is allowed. The test
# runs a private system-type dbus-daemon (like test-bus-reconnect) on which no polkitd runs and
# nothing can be activated, with the project's bus policy and a socket every user may connect to,
# and points the daemon and every client at it. There, an unprivileged user's Map, MapURI and
# Unmap of root's mapping are refused with org.freedesktop.DBus.Error.AccessDenied whose message
# names polkit, at once rather than after a timeout, and nothing is created; root needs no polkit
# and still maps and unmaps. Even a polkit rule on the machine that would allow the user changes
# nothing there. Then a polkit that never answers (flbus.py fake-polkit): while a user's Map
# waits for it, the daemon serves others (List, root's Map and Unmap) at once; the waiting Map is
# refused (AccessDenied, naming polkit) as soon as that polkit goes away, and another one after
# the daemon's polkit timeout (25 s) if it just hangs. One connection may have 16 calls waiting
# for polkit; the 17th is refused at once with LimitsExceeded.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

need_private_bus

ACCESS_DENIED=org.freedesktop.DBus.Error.AccessDenied

make_test_group G
make_test_user U "$G"
# The user must reach the data, and the bus socket in $FL_TMP (make_data_file makes it 0755).
make_data_file "$FL_TMP/data.img" 2
SUM=$(sha256_of "$FL_TMP/data.img")

# On the machine's bus, polkit would let U map, map-uri and unmap-other: the refusals below are
# polkit's absence.
grant_to_group "$G" map,map-uri,unmap-other "$U"

step "private system bus without polkitd"
# The bus of lib.sh (no service directory: no polkitd), where root may own polkit's name for the
# polkit that hangs (flbus.py fake-polkit), started later, and anyone may call it.
FL_PRIVATE_BUS_POLICY='  <policy user="root">
    <allow own="org.freedesktop.PolicyKit1"/>
  </policy>
  <policy context="default">
    <allow send_destination="org.freedesktop.PolicyKit1"/>
  </policy>'
private_bus_start
OUT=$(busctl_ call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
        NameHasOwner s org.freedesktop.PolicyKit1)
assert_eq "b false" "$OUT" "org.freedesktop.PolicyKit1 on the private bus"
OUT=$(as_user "$U" busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
        GetConnectionUnixUser s org.freedesktop.DBus 2>&1) || fail "$U cannot use the private bus: $OUT"
start_daemon
on_shared_bus no_owner || fail "$FL_BUS is owned on the machine's system bus"
start_monitor

step "root maps without polkit"
DEV=$(ctl_map by-root "$FL_TMP/data.img")
assert_eq "$SUM" "$(sha256_of "$DEV")" "sha256 of $DEV"
DEV_URI=$(busctl_map_uri by-root-uri "$FL_TMP/data.img")
assert_eq "$SUM" "$(sha256_of "$DEV_URI")" "sha256 of $DEV_URI"

step "the user's List and properties work; whatever needs polkit is refused at once"
OUT=$(flbus_as "$U" list) || fail "List as $U failed: $OUT"
assert_eq "by-root by-root-uri" "$(cut -f1 <<<"$OUT" | sort | tr '\n' ' ' | sed 's/ $//')" "List() as $U"
OUT=$(flbus_as "$U" props by-root) || fail "GetAll as $U failed: $OUT"
assert_contains "$OUT" "Device=$DEV"
# check_refusal COMMAND...: fails with AccessDenied naming polkit within 10 s.
check_refusal() {
        local start

        start=$(now_ms)
        expect_error "$ACCESS_DENIED" "$@"
        grep -qi polkit <<<"$ERR_OUT" || fail "the refusal does not mention polkit: $ERR_OUT"
        [ $(($(now_ms) - start)) -lt 10000 ] || fail "the refusal took $(($(now_ms) - start)) ms"
}
check_refusal flbus_as "$U" map-fd by-user "$FL_TMP/data.img"
check_refusal flbus_as "$U" --interactive map-fd by-user "$FL_TMP/data.img"
check_refusal flbus_as "$U" map-fd by-user "$FL_TMP/data.img" bind-to-caller=b:true
check_refusal flbus_as "$U" map-uri by-user "$FL_TMP/data.img"
check_refusal flbus_as "$U" unmap by-root
check_refusal flbus_as "$U" unmap "$DEV"
check_refusal flbus_as "$U" unmap-object by-root
check_refusal flbus_as "$U" --interactive unmap-object by-root
expect_failure polkit ctl_as "$U" map by-user "$FL_TMP/data.img"
expect_failure polkit ctl_as "$U" unmap by-root
assert_nothing_left by-user
assert_eq "by-root by-root-uri" "$(list_names | sort | tr '\n' ' ' | sed 's/ $//')" "mappings"
assert_eq active "$(get_prop by-root State)" "State of by-root"
assert_eq "$SUM" "$(sha256_of "$DEV")" "sha256 of $DEV after the refused calls"
! grep -q "by-user" "$FL_MONITOR_LOG" || fail "signals for by-user: $(grep by-user "$FL_MONITOR_LOG")"
alive "$FL_DAEMON_PID" || fail "fuseloopd exited"

# start_fake_polkit: a polkit that never answers on the private bus; pid in FAKE_PID.
start_fake_polkit() {
        : >"$FL_TMP/fake-polkit.log"
        "$PYTHON" -u "$FL_LIB_DIR/flbus.py" fake-polkit >>"$FL_TMP/fake-polkit.log" 2>&1 8>&- &
        FAKE_PID=$!
        FL_PIDS+=("$FAKE_PID")
        if ! wait_until 10 grep -q '^READY$' "$FL_TMP/fake-polkit.log"; then
                cat "$FL_TMP/fake-polkit.log"
                fail "the fake polkit did not start"
        fi
}

stop_fake_polkit() {
        kill "$FAKE_PID"
        wait "$FAKE_PID" || true
        unset 'FL_PIDS[-1]'
}

# start_user_map NAME: Map NAME as $U in the background; its output goes to $FL_TMP/NAME.out.
start_user_map() {
        (flbus_as "$U" map-fd "$1" "$FL_TMP/data.img" || exit $?) >"$FL_TMP/$1.out" 2>&1 8>&- &
        MAP_PID=$!
        FL_PIDS+=("$MAP_PID")
        MAP_START=$(now_ms)
        wait_for 10 "fuseloopd to ask the fake polkit about $1" grep -q '^CALL CheckAuthorization ' "$FL_TMP/fake-polkit.log"
}

# end_user_map NAME: reaps it: it must have failed with AccessDenied naming polkit.
end_user_map() {
        local st=0

        wait "$MAP_PID" || st=$?
        unset 'FL_PIDS[-1]'
        log "Map $1 as $U ended after $(($(now_ms) - MAP_START)) ms with status $st: $(cat "$FL_TMP/$1.out")"
        [ "$st" -ne 0 ] || fail "Map $1 as $U succeeded while polkit did not answer"
        grep -q "$ACCESS_DENIED" "$FL_TMP/$1.out" || fail "Map $1 as $U: $(cat "$FL_TMP/$1.out")"
        grep -qi polkit "$FL_TMP/$1.out" || fail "the refusal does not mention polkit: $(cat "$FL_TMP/$1.out")"
        assert_nothing_left "$1"
}

step "a polkit that hangs: the daemon serves others while a call waits; the call is refused when polkit goes away"
start_fake_polkit
start_user_map waiting-1
T0=$(now_ms)
flbus list >/dev/null
DEV2=$(ctl_map by-root-2 "$FL_TMP/data.img")
assert_eq "$SUM" "$(sha256_of "$DEV2")" "sha256 of $DEV2"
ctl unmap by-root-2
assert_nothing_left by-root-2
T1=$(now_ms)
[ $((T1 - T0)) -lt 10000 ] || fail "List, Map and Unmap by root took $((T1 - T0)) ms while a call waited for polkit"
alive "$MAP_PID" || fail "the user's Map ended before polkit answered: $(cat "$FL_TMP/waiting-1.out")"
mapping_not_listed waiting-1 || fail "waiting-1 is listed while its authorization is pending"
stop_fake_polkit
wait_for 10 "the waiting Map to end" not_alive "$MAP_PID"
end_user_map waiting-1

step "a polkit that hangs: one connection may have 16 calls waiting for it, not more"
start_fake_polkit
flbus_as "$U" map-uri-many 17 many- "$FL_TMP/data.img" >"$FL_TMP/many.out" 2>&1 8>&- &
MANY_PID=$!
FL_PIDS+=("$MANY_PID")
wait_for 10 "the daemon to ask the fake polkit 16 times" \
        eval '[ "$(grep -c "^CALL CheckAuthorization " "$FL_TMP/fake-polkit.log")" -ge 16 ]'
alive "$MANY_PID" || fail "the 17 calls ended before polkit answered: $(cat "$FL_TMP/many.out")"
stop_fake_polkit
wait_for 30 "the 17 calls to end" not_alive "$MANY_PID"
wait "$MANY_PID" || fail "map-uri-many failed: $(cat "$FL_TMP/many.out")"
unset 'FL_PIDS[-1]'
cat "$FL_TMP/many.out"
assert_eq 1 "$(grep -c ' ERROR org.freedesktop.DBus.Error.LimitsExceeded: ' "$FL_TMP/many.out")" \
        "calls refused with LimitsExceeded"
assert_eq 16 "$(grep -c " ERROR $ACCESS_DENIED: " "$FL_TMP/many.out")" "calls refused with AccessDenied"
for i in $(seq 0 16); do assert_nothing_left "many-$i"; done

step "a polkit that hangs: the call is refused after the daemon's timeout"
start_fake_polkit
start_user_map waiting-2
if ! wait_until 60 not_alive "$MAP_PID"; then
        fail "Map as $U still waits $(($(now_ms) - MAP_START)) ms after polkit was asked"
fi
ELAPSED=$(($(now_ms) - MAP_START))
end_user_map waiting-2
[ "$ELAPSED" -ge 15000 ] || fail "the daemon gave up on polkit after $ELAPSED ms already"
stop_fake_polkit

step "root unmaps without polkit"
ctl unmap by-root
flbus unmap "$DEV_URI"
wait_signal 10 "^MappingRemoved by-root $(mapping_path by-root) unmapped$"
wait_signal 10 "^MappingRemoved by-root-uri $(mapping_path by-root-uri) unmapped$"
assert_nothing_left by-root
assert_nothing_left by-root-uri
assert_nothing_mapped
stop_monitor
stop_daemon TERM
assert_eq 0 "$FL_DAEMON_STATUS" "exit status after SIGTERM"
