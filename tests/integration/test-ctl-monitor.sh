#!/bin/bash
# test-ctl-monitor: "fuseloopctl monitor" prints the mappings already there, then every mapping
# added and removed and each change of state as it happens, for people and as JSON lines;
# "fuseloopctl wait" returns once a mapping is active (or gone with --removed), and gives up with
# exit code 6 after --timeout.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/fs.img" 16M "$FL_TMP/tree"
head -c $((2 << 20)) /dev/urandom >"$FL_TMP/raw.bin"
start_daemon

# json_lines FILE EXPRESSION: evaluates EXPRESSION on the list `e` of the JSON objects in FILE.
json_lines() {
        "$PYTHON" -c 'import json, sys; e = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]; print(eval(sys.argv[2]))' \
                "$1" "$2" || fail "cannot evaluate $2 on $1: $(cat "$1")"
}

# start_ctl_monitor LOG [OPTIONS]: fuseloopctl monitor in the background, its pid in MON.
start_ctl_monitor() {
        local log=$1

        shift
        "$FUSELOOPCTL" monitor "$@" >"$log" 2>"$log.err" &
        MON=$!
        FL_PIDS+=("$MON")
}

step "monitor --json: the mapping already there first, then what happens"
DEV0=$(ctl_map before "$FL_TMP/raw.bin")
start_ctl_monitor "$FL_TMP/mon.json" --json
# The subscription is in place once the mappings already there are printed.
wait_for 10 "monitor to list 'before'" grep -q '"event":"present","name":"before"' "$FL_TMP/mon.json"
assert_eq True "$(json_lines "$FL_TMP/mon.json" 'e[0]["event"] == "daemon" and e[0]["running"] is True')" \
        "first event: the daemon runs"
assert_eq "$DEV0" "$(json_lines "$FL_TMP/mon.json" '[x for x in e if x["event"] == "present"][0]["device"]')" \
        "device of the mapping already there"

DEV=$(ctl_map fs "$FL_TMP/fs.img")
wait_for 10 "monitor to see 'fs' added" grep -q '"event":"added","name":"fs"' "$FL_TMP/mon.json"
assert_eq "$DEV" "$(json_lines "$FL_TMP/mon.json" '[x for x in e if x["event"] == "added"][0]["device"]')" \
        "device in the added event"
ctl unmap fs
wait_for 10 "monitor to see 'fs' removed" grep -q '"event":"removed","name":"fs"' "$FL_TMP/mon.json"
assert_eq "detaching unmapped" \
        "$(json_lines "$FL_TMP/mon.json" '" ".join(x.get("state") or x.get("reason") for x in e if x.get("name") == "fs" and x["event"] in ("state", "removed"))')" \
        "state change and removal of fs, in order"

step "a device detached behind the daemon's back is removed with reason 'detached'"
losetup -d "$DEV0"
wait_for 10 "monitor to see 'before' removed" grep -q '"event":"removed","name":"before"' "$FL_TMP/mon.json"
assert_eq detached "$(json_lines "$FL_TMP/mon.json" '[x for x in e if x["event"] == "removed" and x["name"] == "before"][0]["reason"]')" \
        "reason of the removal"
assert_eq True "$(json_lines "$FL_TMP/mon.json" 'all(isinstance(x["time_usec"], int) and x["time_usec"] > 0 for x in e)')" \
        "every event has a time"
kill "$MON"
wait "$MON" 2>/dev/null || true
assert_eq "" "$(cat "$FL_TMP/mon.json.err")" "monitor --json stderr"

step "monitor for people: one line per event"
start_ctl_monitor "$FL_TMP/mon.txt"
wait_for 10 "monitor to start" grep -q ' daemon .*running=yes' "$FL_TMP/mon.txt"
DEV=$(ctl_map fs "$FL_TMP/fs.img")
wait_for 10 "an added line" grep -q " added  *fs device=$DEV\$" "$FL_TMP/mon.txt"
ctl unmap fs
wait_for 10 "a removed line" grep -q ' removed  *fs reason=unmapped$' "$FL_TMP/mon.txt"
cat "$FL_TMP/mon.txt"
assert_match '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} state +fs state=detaching$' "$(grep ' state ' "$FL_TMP/mon.txt")" \
        "the state line"

step "monitor follows the daemon going away and coming back"
stop_daemon
wait_for 10 "a daemon-gone line" grep -q ' daemon .*running=no$' "$FL_TMP/mon.txt"
start_daemon
wait_for 10 "a daemon-back line" test "$(grep -c ' daemon .*running=yes$' "$FL_TMP/mon.txt")" -ge 2
alive "$MON" || fail "monitor ended when the daemon went away"
kill -TERM "$MON"
wait_for 5 "monitor to end on SIGTERM" not_alive "$MON"
rc=0; wait "$MON" || rc=$?
assert_eq 0 "$rc" "exit status of monitor after SIGTERM"

step "wait: returns once the mapping is active"
( sleep 1; "$FUSELOOPCTL" map later "$FL_TMP/fs.img" >"$FL_TMP/later.dev" ) &
MAPPER=$!
FL_PIDS+=("$MAPPER")
rc=0; ctl wait --timeout 60 later || rc=$?
assert_eq 0 "$rc" "exit status of wait"
assert_eq active "$(get_prop later State)" "State when wait returned"
wait "$MAPPER"
is_block "$(cat "$FL_TMP/later.dev")" || fail "no device when wait returned"
rc=0; ctl wait later || rc=$?
assert_eq 0 "$rc" "wait for a mapping that is active already"

step "wait --removed: returns once it is gone"
( sleep 1; "$FUSELOOPCTL" unmap later ) &
UNMAPPER=$!
FL_PIDS+=("$UNMAPPER")
rc=0; ctl wait --removed --timeout 60 later || rc=$?
assert_eq 0 "$rc" "exit status of wait --removed"
mapping_not_listed later || fail "wait --removed returned while 'later' is still listed"
wait "$UNMAPPER"

step "wait --timeout gives up with exit code 6"
T0=$(now_ms)
rc=0; ctl wait --timeout 1 never >"$FL_TMP/out" 2>&1 || rc=$?
T1=$(now_ms)
assert_eq 6 "$rc" "exit status of a wait that timed out ($(cat "$FL_TMP/out"))"
assert_contains "$(cat "$FL_TMP/out")" "'never' did not become active within 1 s" "message"
[ $((T1 - T0)) -ge 900 ] || fail "wait --timeout 1 gave up after $((T1 - T0)) ms"
rc=0; ctl wait 'bad/name' >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "wait for an invalid name"
assert_nothing_mapped
