#!/bin/bash
# test-ctl-json: "fuseloopctl list --json" and "status --json" print what the bus holds, parsed
# with a JSON parser and compared field by field with the mapping's properties; the statistics
# move when data is read (bytes, requests, latency percentiles in order, the kernel's counters);
# the human "status" shows the same; --no-legend and --bytes; the documented exit codes.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

make_tree "$FL_TMP/tree1"
make_tree "$FL_TMP/tree2"
mkgpt "$FL_TMP/gpt.img" "$FL_TMP/tree1" "$FL_TMP/tree2"
head -c $((3 << 20)) /dev/urandom >"$FL_TMP/raw.bin"
start_daemon

# json_get JSON EXPRESSION: evaluates a Python expression on the parsed document `d`.
json_get() {
        "$PYTHON" -c 'import json, sys; d = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2" ||
                fail "cannot evaluate $2 on: $1"
}

step "list --json with nothing mapped is an empty array"
OUT=$(ctl list --json)
assert_eq "[]" "$(json_get "$OUT" 'json.dumps(d)')" "list --json, nothing mapped"

step "map two"
# Reads through the daemon (no passthrough), whose counters are checked below; buffered, so that
# the FUSE file's page cache has hits to count.
DEV=$(ctl_map --passthrough=off --direct-io=off --partscan gpt "$FL_TMP/gpt.img")
DEV2=$(ctl_map --passthrough=off --untrusted raw "$FL_TMP/raw.bin")

step "list --json: one object per mapping, sorted by name, values from the bus"
OUT=$(ctl list --json)
log "list --json: $OUT"
assert_eq 1 "$(wc -l <<<"$OUT")" "lines of list --json (short is one line)"
assert_eq "gpt raw" "$(json_get "$OUT" '" ".join(m["name"] for m in d)')" "names in list --json"
for field in device:Device size:Size state:State source:Source owner_uid:OwnerUID created_usec:CreatedUSec; do
        key=${field%%:*}
        prop=${field#*:}
        assert_eq "$(get_prop gpt "$prop")" "$(json_get "$OUT" "d[0][\"$key\"]")" "list --json $key of gpt"
        assert_eq "$(get_prop raw "$prop")" "$(json_get "$OUT" "d[1][\"$key\"]")" "list --json $key of raw"
done
assert_eq "$DEV" "$(json_get "$OUT" 'd[0]["device"]')" "device of gpt"
assert_eq $((27 << 20)) "$(json_get "$OUT" 'd[0]["size"]')" "size of gpt (bytes)"
assert_eq root "$(json_get "$OUT" 'd[0]["owner"]')" "owner of gpt"
assert_eq False "$(json_get "$OUT" 'd[0]["untrusted"]')" "untrusted of gpt"
assert_eq True "$(json_get "$OUT" 'd[1]["untrusted"]')" "untrusted of raw (mapped with --untrusted)"
assert_eq False "$(json_get "$OUT" 'd[0]["stalled"]')" "stalled of gpt"
assert_eq "$(mapping_path gpt)" "$(json_get "$OUT" 'd[0]["object_path"]')" "object path of gpt"
PRETTY=$(ctl list --json=pretty)
[ "$(wc -l <<<"$PRETTY")" -gt 10 ] || fail "list --json=pretty is not indented: $PRETTY"
assert_eq "$(json_get "$OUT" 'json.dumps(d, sort_keys=True)')" "$(json_get "$PRETTY" 'json.dumps(d, sort_keys=True)')" \
        "short and pretty JSON hold the same"

step "table: --no-legend, human sizes and --bytes"
OUT=$(ctl list --no-legend)
assert_eq 2 "$(wc -l <<<"$OUT")" "lines of list --no-legend"
assert_no_match 'NAME|DEVICE' "$OUT" "list --no-legend"
assert_match "^raw +$DEV2 +3M +active +root " "$(grep '^raw ' <<<"$OUT")" "row of raw"
OUT=$(ctl list --no-legend --bytes)
assert_match "^raw +$DEV2 +3145728 +active " "$(grep '^raw ' <<<"$OUT")" "row of raw with --bytes"

step "read both partitions, then the counters"
drop_caches
mount_ro "${DEV}p1" "$FL_TMP/mnt1" ext4
mount_ro "${DEV}p2" "$FL_TMP/mnt2" squashfs
check_tree "$FL_TMP/mnt1" "$FL_TMP/tree1"
check_tree "$FL_TMP/mnt2" "$FL_TMP/tree2"
OUT=$(ctl status --json gpt)
log "status --json: $OUT"
assert_eq gpt "$(json_get "$OUT" 'd["name"]')" "name"
assert_eq "$DEV" "$(json_get "$OUT" 'd["device"]')" "device"
assert_eq "${DEV}p1 ${DEV}p2" "$(json_get "$OUT" '" ".join(d["partitions"])')" "partitions"
assert_eq "$FL_RUN_DIR/gpt" "$(json_get "$OUT" 'd["backing_file"]')" "backing file"
assert_eq True "$(json_get "$OUT" 'd["partition_scan"]')" "partition scan"
assert_eq 512 "$(json_get "$OUT" 'd["sector_size"]')" "sector size"
assert_eq True "$(json_get "$OUT" '0 <= d["age_usec"] < 600 * 10**6')" "age (below 10 minutes)"
S=$(json_get "$OUT" 'json.dumps(d["statistics"])')
# Both file systems were read in full: more than their files.
assert_eq True "$(json_get "$S" 'd["bytes_read"] >= 2 * 3500000')" "bytes read ($S)"
assert_eq True "$(json_get "$S" 'd["read_requests"] > 0')" "read requests"
assert_eq 0 "$(json_get "$S" 'd["read_errors"]')" "read errors"
assert_eq 0 "$(json_get "$S" 'd["reads_in_flight"]')" "reads in flight"
assert_eq True "$(json_get "$S" '(lambda l: 0 < l["p50"] <= l["p90"] <= l["p99"] <= l["max"])(d["read_latency_usec"])')" \
        "latency percentiles in order ($S)"
assert_eq True "$(json_get "$S" '(lambda r: r is not None and 0 <= r <= 1)(d["cache_hit_ratio"])')" "cache hit ratio"
assert_eq "$(get_prop gpt BytesRead)" "$(json_get "$S" 'd["bytes_read"]')" "bytes_read equals BytesRead"
K=$(json_get "$OUT" 'json.dumps(d["kernel"])')
# The kernel's counters of the device for this attachment (the bus's Kernel* properties).
assert_eq True "$(json_get "$K" 'd["read_ios"] > 0 and d["read_bytes"] >= 2 * 3500000 and d["in_flight"] == 0')" \
        "the kernel's counters ($K)"
assert_eq True "$(json_get "$K" "d['read_bytes'] <= $(get_prop gpt KernelReadBytes)")" "read_bytes against KernelReadBytes"
# They count this attachment only: at most what /sys/block/loopN/stat has counted since the device
# was created.
read -r IOS _ SECTORS _ < "/sys/block/${DEV#/dev/}/stat"
assert_eq True "$(json_get "$K" "d['read_ios'] <= $IOS and d['read_bytes'] <= 512 * $SECTORS")" \
        "the kernel's counters against /sys/block/${DEV#/dev/}/stat read afterwards ($IOS $SECTORS)"

step "status (for people) shows the same"
OUT=$(ctl status gpt)
printf '%s\n' "$OUT"
assert_match "^Partitions: ${DEV}p1 ${DEV}p2$" "$(grep '^Partitions:' <<<"$OUT")" "Partitions line"
assert_match "^Owner: root \(UID 0\)$" "$(grep '^Owner:' <<<"$OUT")" "Owner line"
assert_match "^Read latency: p50 [0-9.]+(us|ms|s), p90 " "$(grep '^Read latency:' <<<"$OUT")" "latency line"
assert_match "^Cache hits: [0-9.]+% " "$(grep '^Cache hits:' <<<"$OUT")" "cache line"
assert_match "^Kernel: [1-9][0-9]* reads, .* read, 0 in flight \(/sys/block/${DEV#/dev/}/stat\)$" "$(grep '^Kernel:' <<<"$OUT")" "kernel line"
assert_match "^Created: .* ago\)$" "$(grep '^Created:' <<<"$OUT")" "Created line"
OUT=$(ctl status --bytes gpt)
assert_eq "Bytes read: $(get_prop gpt BytesRead)" "$(grep '^Bytes read:' <<<"$OUT")" "Bytes read with --bytes"

step "exit codes"
rc=0; ctl status no-such-mapping >"$FL_TMP/out" 2>&1 || rc=$?
assert_eq 3 "$rc" "status of an unknown mapping ($(cat "$FL_TMP/out"))"
assert_contains "$(cat "$FL_TMP/out")" "no mapping named 'no-such-mapping'" "message"
rc=0; ctl status --json no-such-mapping >"$FL_TMP/out" 2>&1 || rc=$?
assert_eq 3 "$rc" "status --json of an unknown mapping"
assert_eq "" "$(grep -v '^fuseloopctl:' "$FL_TMP/out" || true)" "nothing but the error for an unknown mapping"
rc=0; ctl unmap no-such-mapping >"$FL_TMP/out" 2>&1 || rc=$?
assert_eq 3 "$rc" "unmap of an unknown mapping ($(cat "$FL_TMP/out"))"
rc=0; ctl unmap /dev/loop999999 >"$FL_TMP/out" 2>&1 || rc=$?
assert_eq 3 "$rc" "unmap of a device no mapping uses ($(cat "$FL_TMP/out"))"
rc=0; ctl list --json=yaml >"$FL_TMP/out" 2>&1 || rc=$?
assert_eq 2 "$rc" "list --json=yaml"
assert_contains "$(cat "$FL_TMP/out")" "invalid --json value 'yaml'" "message"
rc=0; ctl list --lazy >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "list --lazy (an option of another command)"
rc=0; ctl frobnicate >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "an unknown command"
rc=0; ctl map --partition 1 x "$FL_TMP/raw.bin" >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "--partition without --mount"
mapping_not_listed x || fail "a refused command line mapped something"
rc=0; ctl unmap gpt >"$FL_TMP/out" 2>&1 || rc=$?
assert_eq 5 "$rc" "unmap of a mounted mapping ($(cat "$FL_TMP/out"))"
mapping_listed gpt || fail "a refused unmap removed the mapping"

step "unmap both"
umount_tracked "$FL_TMP/mnt1"
umount_tracked "$FL_TMP/mnt2"
ctl unmap gpt
ctl unmap "$DEV2"
assert_eq "[]" "$(json_get "$(ctl list --json)" 'json.dumps(d)')" "list --json after unmap"
assert_nothing_left gpt
assert_nothing_left raw
assert_nothing_mapped
