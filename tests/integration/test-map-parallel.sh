#!/bin/bash
# test-map-parallel: eight Map calls at once (fuseloopctl, in parallel) all succeed with eight
# distinct loop devices with the right content (no lost race for a free loop device); eight
# parallel unmaps leave nothing behind.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

N=8
for i in $(seq 1 $N); do
        head -c $(((i + 1) << 20)) /dev/urandom >"$FL_TMP/data-$i.bin"
done
start_daemon

step "$N maps at once"
PIDS=()
for i in $(seq 1 $N); do
        "$FUSELOOPCTL" map "par-$i" "$FL_TMP/data-$i.bin" >"$FL_TMP/dev-$i" 2>"$FL_TMP/err-$i" 8>&- &
        PIDS+=($!)
done
for i in $(seq 1 $N); do
        wait "${PIDS[$((i - 1))]}" || fail "map par-$i failed: $(cat "$FL_TMP/err-$i")"
done
DEVS=()
for i in $(seq 1 $N); do
        DEV=$(cat "$FL_TMP/dev-$i")
        [[ $DEV =~ ^/dev/loop[0-9]+$ ]] || fail "map par-$i printed '$DEV'"
        DEVS+=("$DEV")
        assert_eq "$FL_RUN_DIR/par-$i" "$(backing_file "$DEV")" "backing file of $DEV"
        assert_eq "$DEV" "$(get_prop "par-$i" Device)" "Device of par-$i"
done
assert_eq "$N" "$(printf '%s\n' "${DEVS[@]}" | sort -u | wc -l)" "distinct devices"
assert_eq "$N" "$(list_names | grep -c '^par-')" "mappings listed"

step "read all at once"
PIDS=()
for i in $(seq 1 $N); do
        sha256_direct "${DEVS[$((i - 1))]}" >"$FL_TMP/sha-$i" &
        PIDS+=($!)
done
for i in $(seq 1 $N); do
        wait "${PIDS[$((i - 1))]}" || fail "reading ${DEVS[$((i - 1))]} failed"
        assert_eq "$(sha256_of "$FL_TMP/data-$i.bin")" "$(cat "$FL_TMP/sha-$i")" "content of ${DEVS[$((i - 1))]}"
done

step "$N unmaps at once"
PIDS=()
for i in $(seq 1 $N); do
        "$FUSELOOPCTL" unmap "par-$i" 2>"$FL_TMP/err-$i" 8>&- &
        PIDS+=($!)
done
for i in $(seq 1 $N); do
        wait "${PIDS[$((i - 1))]}" || fail "unmap par-$i failed: $(cat "$FL_TMP/err-$i")"
done
for i in $(seq 1 $N); do
        assert_nothing_left "par-$i"
done
assert_nothing_mapped
