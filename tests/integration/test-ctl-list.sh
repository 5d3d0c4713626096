#!/bin/bash
# test-ctl-list: "fuseloopctl list" prints a header and one row per mapping (name, device, human
# size, state, source); "fuseloopctl status NAME" shows the mapping's details.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/list.img" 16M "$FL_TMP/tree"
head -c $((3 << 20)) /dev/urandom >"$FL_TMP/raw.bin"
start_daemon

step "list with nothing mapped"
OUT=$(ctl list) || fail "fuseloopctl list failed with nothing mapped: $OUT"
log "list (empty): $OUT"
assert_no_match 'loop[0-9]' "$OUT" "list output with nothing mapped"

step "list with two mappings"
DEV=$(ctl_map listed "$FL_TMP/list.img")
DEV2=$(ctl_map raw-data "$FL_TMP/raw.bin")
OUT=$(ctl list) || fail "fuseloopctl list failed: $OUT"
printf '%s\n' "$OUT"
HEADER=$(head -n 1 <<<"$OUT")
for col in NAME DEVICE SIZE STATE SOURCE; do
        grep -qiw "$col" <<<"$HEADER" || fail "list header '$HEADER' has no column $col"
done
ROW=$(awk '$1 == "listed"' <<<"$OUT")
[ -n "$ROW" ] || fail "no row for 'listed' in: $OUT"
read -r -a F <<<"$ROW"
assert_eq listed "${F[0]}" "name column"
for want in "$DEV" 16M active "$FL_TMP/list.img"; do
        printf '%s\n' "${F[@]}" | grep -qxF -- "$want" || fail "row '$ROW' has no field '$want'"
done
ROW2=$(awk '$1 == "raw-data"' <<<"$OUT")
for want in "$DEV2" 3M active "$FL_TMP/raw.bin"; do
        grep -qwF -- "$want" <<<"$ROW2" || fail "row '$ROW2' has no field '$want'"
done
assert_eq 2 "$(grep -c "/dev/loop" <<<"$OUT")" "rows with a device in the list output"

step "status"
OUT=$(ctl status listed) || fail "fuseloopctl status listed failed: $OUT"
printf '%s\n' "$OUT"
for want in listed "$DEV" "$FL_TMP/list.img" active "$FL_RUN_DIR/listed"; do
        assert_contains "$OUT" "$want" "status output"
done
grep -Eq '16M|16777216' <<<"$OUT" || fail "status output shows no size (16M or 16777216): $OUT"
expect_failure 'not.?found|no such|no mapping|unknown|does not exist' ctl status no-such-mapping

step "unmap both"
ctl unmap listed
ctl unmap raw-data
OUT=$(ctl list)
assert_no_match 'listed|raw-data' "$OUT" "list output after unmap"
assert_nothing_mapped
