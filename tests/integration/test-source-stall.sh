#!/bin/bash
# test-source-stall: a source that stalls (errfs holds every read of one range until a gate file
# is removed) delays only the reads of that range: while a read of the device waits for it,
# another mapping reads its whole device correctly, and "fuseloopctl list", a busctl call and the
# stalled mapping's own properties each answer within 1 s (measured). The mapping reports
# Stalled (property, PropertiesChanged, "active (stalled)" in the list, "Stalled: yes" in status)
# once the read has waited for 5 s; without a timeout the read is never failed. Released, the read
# completes with the right data, Stalled turns false, nothing was counted as an error, the held
# read shows in ReadsInFlight while held and as ReadLatencyMaxUSec afterwards, and both mappings
# unmap cleanly.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

SIZE=$((4 << 20))
STALL=$((2560 << 10))   # 2.5 MiB: far from what udev's probes and readahead of the start touch
GATE=$FL_TMP/gate       # errfs holds reads of the stalled range while this file exists
head -c "$SIZE" /dev/urandom >"$FL_TMP/data.bin"
head -c "$SIZE" /dev/urandom >"$FL_TMP/good.bin"
start_errfs "$FL_TMP/data.bin" 0 0 "$STALL" 4096 "$GATE"
start_daemon

good_sha() { sha256_direct "$GOOD" >"$FL_TMP/good.sha"; }
expected_stalled_sha() {
        dd if="$FL_TMP/data.bin" bs=4096 skip=$((STALL / 4096)) count=1 status=none | sha256sum | cut -d' ' -f1
}

# Every "all others answer" check of this test, once a read is held.
check_others_answer() {
        answers_within 1000 "reading and hashing all of the other mapping ($GOOD)" good_sha
        assert_eq "$(sha256_of "$FL_TMP/good.bin")" "$(cat "$FL_TMP/good.sha")" "content of $GOOD during the stall"
        answers_within 1000 "fuseloopctl list" ctl list
        assert_contains "$(cat "$FL_TMP/answer.out")" good "fuseloopctl list during the stall"
        answers_within 1000 "busctl call List" busctl_ call "$FL_BUS" "$FL_PATH" "$FL_IFACE" List
        answers_within 1000 "busctl get-property of the stalled mapping" \
                busctl_ get-property "$FL_BUS" "$(mapping_path stalling)" "$FL_MAPPING_IFACE" ReadRequests
        alive "$DD" || fail "the read of the stalled range ended while errfs holds it: $(cat "$FL_TMP/dd.err")"
}

step "map the stalling source and a good one"
# The gate is made only once both are mapped: udev's probes must not stall.
DEV=$(ctl_map stalling "$FL_TMP/errfs/data")
GOOD=$(ctl_map good "$FL_TMP/good.bin")
assert_eq false "$(get_prop stalling Stalled)" "Stalled of a fresh mapping"
assert_eq 0 "$(get_prop stalling Timeout)" "Timeout without the option"

# Stalled changes are recorded from here on (a PropertiesChanged monitor on the mapping object).
"$PYTHON" -u - "$(mapping_path stalling)" >"$FL_TMP/changes.out" 2>&1 8>&- <<'EOF' &
import sys
import dbus
import dbus.mainloop.glib
from gi.repository import GLib

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.SystemBus()

def changed(interface, props, invalidated):
    for k in sorted(props):
        v = props[k]
        print(f"{k}={('true' if v else 'false') if isinstance(v, dbus.Boolean) else v}", flush=True)

bus.add_signal_receiver(changed, "PropertiesChanged", "org.freedesktop.DBus.Properties", None, sys.argv[1])
bus.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId", "", ())
print("READY", flush=True)
GLib.MainLoop().run()
EOF
MONITOR=$!
FL_PIDS+=("$MONITOR")
wait_for 10 "the PropertiesChanged monitor" grep -q '^READY$' "$FL_TMP/changes.out"

step "a read of the stalled range waits for the source"
touch "$GATE"
# Nothing cached: the read must reach the daemon and errfs.
drop_caches
STALL_START=$(now_ms)
dd if="$DEV" iflag=direct bs=4096 skip=$((STALL / 4096)) count=1 of="$FL_TMP/stalled.bin" status=none \
        2>"$FL_TMP/dd.err" 8>&- &
DD=$!
FL_PIDS+=("$DD")
wait_for 10 "errfs to hold a read of the stalled range" grep -q '^stall ' "$FL_TMP/errfs.log"
log "errfs holds: $(grep '^stall ' "$FL_TMP/errfs.log" | tr '\n' ';')"
alive "$DD" || fail "the read of the stalled range did not wait: $(cat "$FL_TMP/dd.err")"
assert_eq false "$(get_prop stalling Stalled)" "Stalled right after the read started to wait"

step "meanwhile the other mapping, the bus and the daemon answer within 1 s"
check_others_answer

step "after 5 s the mapping is stalled"
wait_for 15 "Stalled to become true" prop_is stalling Stalled true
TOOK=$(($(now_ms) - STALL_START))
[ "$TOOK" -ge 4500 ] || fail "Stalled after $TOOK ms, before the read had waited 5 s"
wait_for 5 "a PropertiesChanged signal with Stalled=true" grep -q '^Stalled=true$' "$FL_TMP/changes.out"
ROW=$(ctl list --no-legend | awk '$1 == "stalling"')
assert_contains "$ROW" "active (stalled)" "the list row of the stalled mapping"
assert_no_match 'stalled' "$(ctl list --no-legend | awk '$1 == "good"')" "the list row of the other mapping"
assert_contains "$(ctl status stalling)" "Stalled: yes" "fuseloopctl status of the stalled mapping"
assert_contains "$(ctl status good)" "Stalled: no" "fuseloopctl status of the other mapping"
assert_eq false "$(get_prop good Stalled)" "Stalled of the other mapping"

step "still stalled, everything else still answers within 1 s"
check_others_answer
# The held read is in flight; status says so too.
[ "$(get_prop stalling ReadsInFlight)" -ge 1 ] || fail "ReadsInFlight is $(get_prop stalling ReadsInFlight) during the stall"
assert_match '^Read requests: [0-9]+ \([1-9][0-9]* in flight\)$' "$(ctl status stalling | grep '^Read requests:')" \
        "fuseloopctl status during the stall"
assert_eq 0 "$(get_prop stalling ReadErrors)" "ReadErrors while stalled without a timeout"
assert_eq 0 "$(get_prop stalling TimedOutReads)" "TimedOutReads without a timeout"

step "released, the read completes with the right data and Stalled turns false"
rm -f "$GATE"
wait_for 10 "the held read to complete" not_alive "$DD"
DD_STATUS=0
wait "$DD" || DD_STATUS=$?
forget_pid "$DD"
[ "$DD_STATUS" -eq 0 ] || fail "the read of the stalled range failed (status $DD_STATUS): $(cat "$FL_TMP/dd.err")"
assert_eq "$(expected_stalled_sha)" "$(sha256_of "$FL_TMP/stalled.bin")" "the data of the stalled range"
wait_for 5 "Stalled to become false" prop_is stalling Stalled false
# The held read's latency is the longest, and at least as long as the stall took to report.
MAX_USEC=$(get_prop stalling ReadLatencyMaxUSec)
[ "$MAX_USEC" -ge $((TOOK * 1000)) ] || fail "ReadLatencyMaxUSec $MAX_USEC is below the $TOOK ms the read was held"
[ "$(get_prop stalling ReadLatencyP50USec)" -lt "$MAX_USEC" ] || fail "ReadLatencyP50USec is not below the held read's"
assert_eq 0 "$(get_prop stalling ReadsInFlight)" "ReadsInFlight after the stall"
wait_for 5 "a PropertiesChanged signal with Stalled=false" grep -q '^Stalled=false$' "$FL_TMP/changes.out"
assert_eq 0 "$(get_prop stalling ReadErrors)" "ReadErrors after the stall"
assert_eq 0 "$(get_prop stalling TimedOutReads)" "TimedOutReads after the stall"
assert_no_match 'stalled' "$(ctl list --no-legend | awk '$1 == "stalling"')" "the list row after the stall"
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_direct "$DEV")" "content of $DEV after the stall"
alive "$FL_DAEMON_PID" || fail "fuseloopd died"

step "unmap both, stop errfs"
kill "$MONITOR"
wait "$MONITOR" 2>/dev/null || true
forget_pid "$MONITOR"
ctl unmap stalling
ctl unmap good
assert_nothing_left stalling
assert_nothing_left good
assert_nothing_mapped
kill -TERM "$ERRFS"
wait_for 10 "errfs to exit" not_alive "$ERRFS"
wait_for 5 "errfs to be unmounted" eval "! mountpoint -q '$FL_TMP/errfs'"
