#!/bin/bash
# test-log-journal: run as under systemd (stderr a journal stream of a real systemd-journald,
# JOURNAL_STREAM naming it), the daemon logs natively to the journal: every message about a
# mapping carries MAPPING=<name> and DEVICE=/dev/loopN (also those of its FUSE session, e.g. a
# failed source read, which carries ERRNO=5), with PRIORITY and SYSLOG_IDENTIFIER, so that
# "journalctl MAPPING=<name>" shows a mapping's life. With stderr a plain file the same daemon
# writes plain lines: no "<N>" prefixes, the name in the text. With stderr a journal stream but
# journald out of reach (its socket hidden), it falls back to "<N>" lines on that stream.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

command -v journalctl >/dev/null && command -v systemd-cat >/dev/null || skip "journalctl or systemd-cat missing"
journalctl --sync >/dev/null 2>&1 || skip "no systemd-journald runs (tests/lib/services.sh starts one)"

SIZE=$((4 << 20))
BAD=$((3 << 20))
head -c "$SIZE" /dev/urandom >"$FL_TMP/data.bin"
start_errfs "$FL_TMP/data.bin" "$BAD" 4096
NAME=$(fl_random_name journal-)

# The entries of MAPPING=$NAME that our daemon (pid $1) wrote, one JSON object a line.
entries() {
        journalctl --sync
        journalctl --no-pager -o json "MAPPING=$NAME" "_PID=$1"
}

# check_entries PID PYTHON-EXPRESSION WHAT: the expression on `e` (the list of entries) holds.
check_entries() {
        entries "$1" >"$FL_TMP/entries.json"
        "$PYTHON" - "$FL_TMP/entries.json" "$2" <<'PY' || fail "$3; the entries:"$'\n'"$(cat "$FL_TMP/entries.json")"
import json, sys
e = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
}

step "the daemon's stderr is a journal stream"
# systemd-cat connects stdout and stderr to journald and execs the rest; sh sets JOURNAL_STREAM
# to the stream's device and inode as systemd does, then execs the daemon (same pid throughout).
# shellcheck disable=SC2016 # expanded by that sh
FL_DAEMON_WRAPPER=(systemd-cat -t fuseloopd-test sh -c \
        'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM && exec "$@"' sh)
start_daemon
PID=$FL_DAEMON_PID

step "map, read a bad block, unmap"
DEV=$(ctl_map "$NAME" "$FL_TMP/errfs/data")
expect_failure 'input/output error' dd if="$DEV" iflag=direct bs=4096 skip=$((BAD / 4096)) count=1 of=/dev/null
ctl unmap "$NAME"
wait_for 10 "the removal in the journal" sh -c "journalctl --sync; journalctl --no-pager -o cat MAPPING='$NAME' _PID=$PID | grep -q 'removed (unmapped)'"

step "journalctl MAPPING=$NAME shows the mapping's life, with its fields"
entries "$PID" | "$PYTHON" -c 'import json, sys
for l in sys.stdin:
    d = json.loads(l)
    print(d.get("PRIORITY"), d.get("DEVICE"), d.get("ERRNO", "-"), d["MESSAGE"])'
check_entries "$PID" 'any("is active" in x["MESSAGE"] for x in e) and any("removed (unmapped)" in x["MESSAGE"] for x in e)' \
        "no 'is active' and 'removed (unmapped)' entries"
check_entries "$PID" "all(x['MESSAGE'].startswith(\"Mapping '$NAME': \") for x in e)" "an entry does not name the mapping"
check_entries "$PID" "all(x.get('DEVICE') == '$DEV' for x in e if 'is active' in x['MESSAGE'] or 'removed' in x['MESSAGE'])" \
        "DEVICE=$DEV missing"
check_entries "$PID" 'all(x.get("SYSLOG_IDENTIFIER") == "fuseloopd" and x.get("_TRANSPORT") == "journal" for x in e)' \
        "entries not sent natively by fuseloopd"
check_entries "$PID" 'all(x.get("PRIORITY") == "6" for x in e if "is active" in x["MESSAGE"])' "PRIORITY of 'is active' is not 6 (info)"
# Where in the source each message was written, relative to the source root.
check_entries "$PID" 'all(x.get("CODE_FILE", "").startswith("src/daemon/") and x.get("CODE_LINE", "").isdigit() and x.get("CODE_FUNC") for x in e)' \
        "an entry without CODE_FILE=src/daemon/..., CODE_LINE or CODE_FUNC"
check_entries "$PID" 'any(x.get("CODE_FILE") == "src/daemon/fuse-file.c" for x in e)' "no entry from the FUSE session's code"
# The FUSE session's message about the failed read: debug, the errno, and the device too.
check_entries "$PID" "any('source read failed' in x['MESSAGE'] and x.get('ERRNO') == '5' and x.get('PRIORITY') == '7' and x.get('DEVICE') == '$DEV' for x in e)" \
        "no debug entry for the failed read with ERRNO=5 and DEVICE=$DEV"
# Messages not about a mapping carry no MAPPING field.
journalctl --no-pager -o json "_PID=$PID" >"$FL_TMP/all.json"
grep -q '"MESSAGE":"fuseloopd .* ready on ' "$FL_TMP/all.json" || fail "no start-up message in the journal"
! grep '"MESSAGE":"fuseloopd .* ready on ' "$FL_TMP/all.json" | grep -q '"MAPPING"' ||
        fail "the start-up message carries a MAPPING field"
stop_daemon TERM
# Its stderr was the journal: a sanitizer report would be there, so judge by the exit status.
assert_eq 0 "$FL_DAEMON_STATUS" "exit status of the daemon that logged to the journal"
[ ! -s "$FL_DAEMON_LOG" ] || ! grep -q "Mapping '$NAME'" "$FL_DAEMON_LOG" ||
        fail "messages went to the plain log although the journal took them"

step "stderr a plain file: plain lines"
FL_DAEMON_WRAPPER=()
NAME2=$(fl_random_name plain-)
start_daemon
DEV=$(ctl_map "$NAME2" "$FL_TMP/data.bin")
ctl unmap "$NAME2"
stop_daemon TERM
assert_eq 0 "$FL_DAEMON_STATUS" "exit status of the daemon that logged to a file"
grep -q "^Mapping '$NAME2': $DEV is active" "$FL_DAEMON_LOG" || fail "no plain 'is active' line in $FL_DAEMON_LOG"
! grep -qE '^<[0-7]>' "$FL_DAEMON_LOG" || fail "priority prefixes in a plain log: $(grep -E '^<[0-7]>' "$FL_DAEMON_LOG" | head -3)"
! grep -qE '(MAPPING|DEVICE|PRIORITY|CODE_FILE|SYSLOG_IDENTIFIER)=' "$FL_DAEMON_LOG" || fail "journal fields in a plain log"
# Text only: no NUL bytes or other control characters of the journal's binary field format.
[ "$(tr -d '\n\t\040-\176' <"$FL_DAEMON_LOG" | wc -c)" = 0 ] ||
        fail "control or binary bytes in a plain log: $(tr -d '\n\t\040-\176' <"$FL_DAEMON_LOG" | od -c | head -3)"

step "stderr a journal stream, journald out of reach: '<N>' lines on the stream"
# A mount namespace of its own whose /run/systemd/journal is empty: sd_journal_sendv() finds no
# socket. JOURNAL_STREAM names the log file, which stands in for the stream here.
# shellcheck disable=SC2016 # expanded by that sh
FL_DAEMON_WRAPPER=(unshare --mount --propagation slave sh -c \
        'mount -t tmpfs -o size=64k,mode=0755 tmpfs /run/systemd/journal && JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM && exec "$@"' sh)
SEEN=$(wc -l <"$FL_DAEMON_LOG")
start_daemon
stop_daemon TERM
assert_eq 0 "$FL_DAEMON_STATUS" "exit status of the daemon that could not reach journald"
tail -n +$((SEEN + 1)) "$FL_DAEMON_LOG" >"$FL_TMP/fallback.log"
grep -qE '^<6>fuseloopd .* ready on ' "$FL_TMP/fallback.log" || fail "no '<6>' start-up line on the stream in $FL_DAEMON_LOG"
! grep -qE '^(error|warning): ' "$FL_TMP/fallback.log" || fail "plain-file words on a journal stream"
assert_nothing_mapped

step "a daemon that logs only warnings maps as well: Map still returns the device"
# The device once came from inside an info message, and went missing with it.
FL_DAEMON_WRAPPER=()
FL_DAEMON_ARGS=(--log-level warning)
SEEN=$(wc -l <"$FL_DAEMON_LOG")
start_daemon
DEV=$(ctl_map "$NAME2" "$FL_TMP/data.bin")
assert_match '^/dev/loop[0-9]+$' "$DEV" "the device fuseloopctl map printed"
assert_eq "$DEV" "$(get_prop "$NAME2" Device)" "Device property"
OUT=$(flbus map-uri "${NAME2}u" "$FL_TMP/data.bin")
assert_contains "$OUT" "/dev/loop" "MapURI's reply"
ctl unmap "$NAME2"
ctl unmap "${NAME2}u"
stop_daemon TERM
! tail -n +$((SEEN + 1)) "$FL_DAEMON_LOG" | grep -q "is active" || fail "an info message at log level warning"
assert_nothing_mapped
