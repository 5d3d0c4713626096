#!/bin/bash
# test-unit-security: the systemd unit as built ($FUSELOOP_BUILD/fuseloopd.service) is hardened:
# `systemd-analyze security --offline=true` rates its overall exposure at 2.5 or lower, every
# option the assessment still counts against it is explained in a comment of the unit, and
# `systemd-analyze verify` prints nothing (about the unit and the units it references). The D-Bus
# activation file ($FUSELOOP_BUILD/org.proxmox.FuseLoop1.service) starts the same binary as root
# and hands activation to this unit, whose BusName= is the activation file's Name=.
# Needs no daemon: nothing here runs fuseloopd.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

MAX_EXPOSURE=2.5
UNIT=$FUSELOOP_BUILD/fuseloopd.service
ACTIVATION=$FUSELOOP_BUILD/org.proxmox.FuseLoop1.service

command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed"
[ -r "$UNIT" ] || fail "$UNIT is missing (built from systemd/fuseloopd.service.in)"
[ -r "$ACTIVATION" ] || fail "$ACTIVATION is missing (built from dbus/org.proxmox.FuseLoop1.service.in)"

# unit_value FILE KEY: the value of the last KEY= line of FILE (systemd and D-Bus service files
# alike: the last assignment of a single-valued key wins).
unit_value() {
        awk -v k="$2" '
                /^[ \t]*[#;]/ { next }
                { i = index($0, "="); if (i == 0) next
                  key = substr($0, 1, i - 1); sub(/[ \t]+$/, "", key); sub(/^[ \t]+/, "", key)
                  if (key == k) { v = substr($0, i + 1); sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v); val = v; found = 1 } }
                END { if (found) print val }' "$1"
}

# A private copy in a directory of its own: systemd-analyze verify adds the unit's directory to
# the unit search path, and the build directory holds other *.service files (the D-Bus one).
mkdir -p "$FL_TMP/unit"
cp "$UNIT" "$FL_TMP/unit/fuseloopd.service"
COPY=$FL_TMP/unit/fuseloopd.service

step "the activation file and the unit agree"
EXEC_START=$(unit_value "$COPY" ExecStart)
DAEMON_BIN=${EXEC_START%% *}
# Strip ExecStart= prefixes (-, @, :, +, !) should one be added.
DAEMON_BIN=${DAEMON_BIN##[-@:+!]}
DAEMON_BIN=${DAEMON_BIN##[-@:+!]}
assert_match '^/.*/fuseloopd$' "$DAEMON_BIN" "ExecStart= binary of $UNIT"
assert_eq "$DAEMON_BIN" "$(unit_value "$ACTIVATION" Exec)" "Exec= of $ACTIVATION (the unit's ExecStart= binary)"
assert_eq root "$(unit_value "$ACTIVATION" User)" "User= of $ACTIVATION"
assert_eq fuseloopd.service "$(unit_value "$ACTIVATION" SystemdService)" "SystemdService= of $ACTIVATION"
assert_eq "$FL_BUS" "$(unit_value "$ACTIVATION" Name)" "Name= of $ACTIVATION"
assert_eq "$FL_BUS" "$(unit_value "$COPY" BusName)" "BusName= of $UNIT"
assert_eq notify "$(unit_value "$COPY" Type)" "Type= of $UNIT"
grep -qx '\[D-BUS Service\]' "$ACTIVATION" || fail "$ACTIVATION has no [D-BUS Service] section"

step "systemd-analyze verify prints nothing"
# verify checks that ExecStart='s binary exists. It does where the build's prefix is installed;
# elsewhere the copy runs the binary just built instead, and everything else is checked the same.
if [ ! -x "$DAEMON_BIN" ]; then
        log "$DAEMON_BIN is not installed here; verifying with ExecStart=$FUSELOOPD instead"
        sed -i "s|^ExecStart=.*|ExecStart=$FUSELOOPD|" "$COPY"
fi
OUT=$(cd "$FL_TMP/unit" && systemd-analyze --no-pager verify "$COPY" 2>&1) || {
        printf '%s\n' "$OUT"
        fail "systemd-analyze verify failed (status $?)"
}
[ -z "$OUT" ] || fail "systemd-analyze verify $UNIT is not silent:"$'\n'"$OUT"
log "systemd-analyze verify: silent"

step "systemd-analyze security: overall exposure <= $MAX_EXPOSURE"
systemd-analyze --no-pager security --offline=true "$COPY" >"$FL_TMP/security.txt" 2>&1 || {
        cat "$FL_TMP/security.txt"
        fail "systemd-analyze security --offline=true failed"
}
# "→ Overall exposure level for fuseloopd.service: 2.3 OK 🙂" ("->" outside UTF-8 locales)
LINE=$(grep -a 'Overall exposure level for' "$FL_TMP/security.txt") || {
        cat "$FL_TMP/security.txt"
        fail "no 'Overall exposure level' line in the output of systemd-analyze security"
}
log "$LINE"
[[ $LINE =~ Overall\ exposure\ level\ for\ [^:]*:\ ([0-9]+)\.([0-9])[^0-9] ]] ||
        fail "cannot parse the exposure from '$LINE'"
EXPOSURE=${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
TENTHS=$((10#${BASH_REMATCH[1]} * 10 + 10#${BASH_REMATCH[2]}))
MAX_TENTHS=$((10#${MAX_EXPOSURE%.*} * 10 + 10#${MAX_EXPOSURE#*.}))
if [ "$TENTHS" -gt "$MAX_TENTHS" ]; then
        cat "$FL_TMP/security.txt"
        fail "overall exposure of $UNIT is $EXPOSURE, more than $MAX_EXPOSURE"
fi
# The same limit as systemd-analyze applies it (--threshold= counts in tenths).
systemd-analyze --no-pager security --offline=true --threshold="$MAX_TENTHS" "$COPY" >/dev/null 2>&1 ||
        fail "systemd-analyze security --threshold=$MAX_TENTHS fails for $UNIT (exposure $EXPOSURE)"

step "every option counted against the unit is explained in a comment of the unit"
# The assessment's items that count ("set": false). An item is an option ("PrivateTmp="), an
# option with a detail ("CapabilityBoundingSet=~CAP_SYS_ADMIN") or two options
# ("User=/DynamicUser="); a comment of the unit must name the (first) option.
systemd-analyze --no-pager security --offline=true --json=short "$COPY" >"$FL_TMP/security.json" ||
        fail "systemd-analyze security --json=short failed"
"$PYTHON" -c '
import json, sys
for item in json.load(open(sys.argv[1])):
    if item.get("set") is False:
        print(item["name"])
' "$FL_TMP/security.json" >"$FL_TMP/counted" || fail "cannot parse $FL_TMP/security.json"
COMMENTS=$(grep -E '^[[:space:]]*#' "$COPY")
N=0
while read -r name; do
        opt=${name%%=*}=
        [[ $COMMENTS == *"$opt"* ]] || fail "$name counts against the unit, but no comment of $UNIT mentions $opt"
        N=$((N + 1))
done <"$FL_TMP/counted"
[ "$N" -gt 0 ] || fail "no items counted against the unit parsed from systemd-analyze security (format changed?)"
log "each of the $N items counted against the unit is explained in its comments: $(paste -sd' ' "$FL_TMP/counted")"
