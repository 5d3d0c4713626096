#!/bin/bash
# test-auth-quota: with --max-mappings-per-user 2, a user (allowed to map by a polkit rule for its
# group) who has two mappings gets org.proxmox.FuseLoop1.Error.QuotaExceeded for a third, with
# nothing created (no device, no object, no MappingAdded); the quota is per uid (another user
# still maps), root is never limited, and unmapping one (by the owner or by root) makes room
# again. Three Maps sent at once by a user with no mapping: exactly two succeed.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

make_test_group G
make_test_user A "$G"
make_test_user B "$G"
UID_A=$(id -u "$A")
make_data_file "$FL_TMP/data.img" 1
SUM=$(sha256_of "$FL_TMP/data.img")

grant_to_group "$G" map "$A" "$B"
FL_DAEMON_ARGS=(--max-mappings-per-user 2)
start_daemon
start_monitor

# over_quota USER NAME: Map of NAME by USER fails with QuotaExceeded, through the bus and through
# fuseloopctl (with and without --bind), and leaves nothing behind.
over_quota() {
        expect_error QuotaExceeded flbus_as "$1" map-fd "$2" "$FL_TMP/data.img"
        expect_error QuotaExceeded flbus_as "$1" map-fd "$2" "$FL_TMP/data.img" bind-to-caller=b:true
        expect_failure 'quota|--max-mappings-per-user|most' ctl_as "$1" map "$2" "$FL_TMP/data.img"
        expect_failure 'quota|--max-mappings-per-user|most' ctl_as "$1" map --bind "$2" "$FL_TMP/data.img"
        assert_nothing_left "$2"
}

mapped_by() { # UID: how many listed mappings have OwnerUID UID
        local n c=0

        for n in $(list_names); do
                [ "$(get_prop "$n" OwnerUID)" != "$1" ] || c=$((c + 1))
        done
        echo "$c"
}

step "two mappings per user, the third is refused"
DEV1=$(ctl_map_as "$A" qa-1 "$FL_TMP/data.img")
OUT=$(flbus_as "$A" map-fd qa-2 "$FL_TMP/data.img") || fail "second Map as $A failed: $OUT"
over_quota "$A" qa-over
assert_eq 2 "$(mapped_by "$UID_A")" "mappings of $A"
assert_eq "$SUM" "$(sha256_of "$DEV1")" "sha256 of $DEV1"

step "the quota is per user; root is not limited"
ctl_map_as "$B" qb-1 "$FL_TMP/data.img" >/dev/null
ctl_map_as "$B" qb-2 "$FL_TMP/data.img" >/dev/null
over_quota "$B" qb-over
for i in 1 2 3; do
        ctl_map "qr-$i" "$FL_TMP/data.img" >/dev/null
done
OUT=$(flbus map-fd qr-4 "$FL_TMP/data.img") || fail "root's fourth Map failed: $OUT"
assert_eq 4 "$(mapped_by 0)" "mappings of root"

step "unmapping one of its own makes room again"
ctl_as "$A" unmap qa-1 || fail "unmap qa-1 as $A failed"
assert_nothing_left qa-1
DEV3=$(ctl_map_as "$A" qa-3 "$FL_TMP/data.img")
assert_eq "$SUM" "$(sha256_of "$DEV3")" "sha256 of $DEV3"
over_quota "$A" qa-over

step "root unmapping one of the user's makes room too"
ctl unmap qa-2
assert_nothing_left qa-2
ctl_map_as "$A" qa-4 "$FL_TMP/data.img" >/dev/null
over_quota "$A" qa-over
assert_eq 2 "$(mapped_by "$UID_A")" "mappings of $A"

step "three Maps at once from a user with none: two succeed, one is refused"
ctl_as "$A" unmap qa-3
ctl_as "$A" unmap qa-4
assert_eq 0 "$(mapped_by "$UID_A")" "mappings of $A"
PIDS=()
for i in 1 2 3; do
        (flbus_as "$A" map-fd "qp-$i" "$FL_TMP/data.img" || exit $?) >"$FL_TMP/qp-$i.out" 2>&1 8>&- &
        PIDS+=($!)
        FL_PIDS+=($!)
done
OK=0
OVER=0
for i in 1 2 3; do
        if wait "${PIDS[$((i - 1))]}"; then
                OK=$((OK + 1))
                mapping_listed "qp-$i" || fail "qp-$i reported success but is not listed"
        else
                grep -q "$FL_ERR.QuotaExceeded" "$FL_TMP/qp-$i.out" ||
                        fail "qp-$i failed otherwise than with QuotaExceeded: $(cat "$FL_TMP/qp-$i.out")"
                OVER=$((OVER + 1))
                assert_nothing_left "qp-$i"
        fi
        log "qp-$i: $(cat "$FL_TMP/qp-$i.out")"
done
FL_PIDS=("${FL_PIDS[@]:0:${#FL_PIDS[@]}-3}")
assert_eq "2 1" "$OK $OVER" "successful and refused parallel Maps"
assert_eq 2 "$(mapped_by "$UID_A")" "mappings of $A after the parallel Maps"

step "no MappingAdded for a refused Map; everything is unmapped"
! grep -Eq "^MappingAdded (qa|qb)-over " "$FL_MONITOR_LOG" ||
        fail "MappingAdded for a refused Map: $(grep -E "^MappingAdded (qa|qb)-over " "$FL_MONITOR_LOG")"
for n in $(list_names); do
        ctl unmap "$n"
        assert_nothing_left "$n"
done
assert_nothing_mapped
