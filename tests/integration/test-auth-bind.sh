#!/bin/bash
# test-auth-bind: bind-to-caller for an unprivileged user (allowed to map by a polkit rule for its
# group): "fuseloopctl map --bind" run as the user keeps its mapping (owned by the user) while it
# runs; when the client ends on SIGTERM or is killed, the daemon removes the mapping with the
# reason caller-gone and nothing is left. Another member of the group cannot unmap a bound
# mapping; its owner can, from another connection (reason unmapped), and the client's later end
# then removes nothing more.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

make_test_group G
make_test_user A "$G"
make_test_user B "$G"
UID_A=$(id -u "$A")
make_data_file "$FL_TMP/data.img" 2
SUM=$(sha256_of "$FL_TMP/data.img")

grant_to_group "$G" map "$A"
start_daemon
start_monitor

# start_bound NAME: runs "fuseloopctl map --bind NAME data.img" as $A in the background and waits
# until it printed the device. Sets RUNUSER (the pid we started, which runs runuser; kept for the
# cleanup), CTL (fuseloopctl, started by runuser) and DEV.
start_bound() {
        as_user "$A" "$FUSELOOPCTL" map --bind "$1" "$FL_TMP/data.img" \
                >"$FL_TMP/$1.out" 2>"$FL_TMP/$1.err" 8>&- &
        RUNUSER=$!
        FL_PIDS+=("$RUNUSER")
        if ! wait_until 30 grep -q '^/dev/loop' "$FL_TMP/$1.out"; then
                cat "$FL_TMP/$1.out" "$FL_TMP/$1.err"
                fail "fuseloopctl map --bind $1 as $A printed no device within 30 s"
        fi
        DEV=$(cat "$FL_TMP/$1.out")
        [[ $DEV =~ ^/dev/loop[0-9]+$ ]] || fail "fuseloopctl map --bind $1 printed '$DEV'"
        CTL=$(user_child "$RUNUSER" fuseloopctl) ||
                fail "no single fuseloopctl process below pid $RUNUSER"
        assert_eq "$UID_A" "$(stat -c %u "/proc/$CTL")" "uid of fuseloopctl (pid $CTL)"
        log "fuseloopctl map --bind $1 as $A: pid $CTL (below pid $RUNUSER), device $DEV"
}

# end_bound SIGNAL: sends SIGNAL to fuseloopctl (never to anything else), reaps RUNUSER and
# forgets it. Leaves its exit status in STATUS.
end_bound() {
        kill -"$1" "$CTL"
        STATUS=0
        wait "$RUNUSER" || STATUS=$?
        unset 'FL_PIDS[-1]'
        log "fuseloopctl (pid $CTL) ended after SIG$1; the background job exited with status $STATUS; stderr: $(cat "$FL_TMP/$NAME.err")"
}

for SIG in TERM KILL; do
        NAME=bound-$SIG
        step "a bound mapping of $A; its client ends on SIG$SIG"
        start_bound "$NAME"
        wait_signal 10 "^MappingAdded $NAME $(mapping_path "$NAME") $DEV$"
        assert_eq "$SUM" "$(sha256_of "$DEV")" "sha256 of $DEV"
        assert_eq "$UID_A" "$(get_prop "$NAME" OwnerUID)" "OwnerUID of $NAME"
        sleep 1
        mapping_listed "$NAME" || fail "$NAME went away while its client still runs"
        alive "$CTL" || fail "fuseloopctl map --bind (pid $CTL) exited by itself"
        end_bound "$SIG"
        wait_signal 15 "^MappingRemoved $NAME $(mapping_path "$NAME") caller-gone$"
        wait_for 10 "'$NAME' to disappear" mapping_not_listed "$NAME"
        assert_nothing_left "$NAME"
done

step "another member of $G cannot unmap a bound mapping; its owner can from another connection"
NAME=bound-owner
start_bound "$NAME"
expect_error org.freedesktop.DBus.Error.AccessDenied flbus_as "$B" unmap "$NAME"
expect_error org.freedesktop.DBus.Error.AccessDenied flbus_as "$B" unmap-object "$NAME"
assert_eq active "$(get_prop "$NAME" State)" "State of $NAME after the refused unmaps"
OUT=$(flbus_as "$A" unmap "$NAME" 2>&1) || fail "Unmap of $NAME by its owner failed: $OUT"
wait_signal 15 "^MappingRemoved $NAME $(mapping_path "$NAME") unmapped$"
assert_nothing_left "$NAME"
alive "$CTL" || fail "fuseloopctl map --bind (pid $CTL) exited when its mapping was unmapped"
end_bound TERM
sleep 1
assert_eq 1 "$(grep -c "^MappingRemoved $NAME " "$FL_MONITOR_LOG")" "MappingRemoved signals for $NAME"
assert_nothing_mapped
