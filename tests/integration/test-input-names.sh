#!/bin/bash
# test-input-names: bad mapping names are refused with InvalidName (MapURI, Map with an fd,
# fuseloopctl) and leave nothing behind; names at the limits (128 bytes, every allowed
# punctuation character) work; a name already in use is refused with AlreadyMapped and the
# first mapping keeps working.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

head -c $((2 << 20)) /dev/urandom >"$FL_TMP/data.bin"
LONG200=$(printf 'a%.0s' $(seq 200))
LONG129=$(printf 'b%.0s' $(seq 129))
LONG128=$(printf 'c%.0s' $(seq 128))
start_daemon

step "bad names"
for name in '../x' 'a/b' '' "$LONG200" "$LONG129" 'a b' '.hidden' '.' '..' 'x*' 'new
line' 'ä'; do
        log "name '$name'"
        expect_error InvalidName flbus map-uri "$name" "$FL_TMP/data.bin"
        expect_error InvalidName flbus map-fd "$name" "$FL_TMP/data.bin"
        if [[ $name =~ ^[\ -~]{1,64}$ ]]; then
                assert_contains "$ERR_OUT" "$name" "InvalidName message (must quote the name)"
        fi
        expect_failure 'name|invalid' ctl map "$name" "$FL_TMP/data.bin"
        assert_nothing_mapped
done
[ ! -e /run/x ] || fail "/run/x exists after mapping '../x'"

step "names at the limits work"
for name in "$LONG128" 'a._:@+-Z9' '0starts-with-digit' 'x'; do
        DEV=$(ctl_map "$name" "$FL_TMP/data.bin")
        assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_of "$DEV")" "content of $DEV"
        assert_eq "$name" "$(get_prop "$name" Name)" "Name property at $(mapping_path "$name")"
        ctl unmap "$name"
        assert_nothing_left "$name"
done

step "duplicate name"
DEV=$(ctl_map taken "$FL_TMP/data.bin")
head -c $((1 << 20)) /dev/urandom >"$FL_TMP/other.bin"
expect_error AlreadyMapped flbus map-uri taken "$FL_TMP/other.bin"
assert_contains "$ERR_OUT" taken "AlreadyMapped message"
expect_error AlreadyMapped flbus map-fd taken "$FL_TMP/other.bin"
expect_failure 'already|exists|in use' ctl map taken "$FL_TMP/other.bin"
assert_eq 1 "$(list_names | grep -cx taken)" "List() rows named 'taken'"
assert_eq "$DEV" "$(get_prop taken Device)" "Device of the first mapping"
assert_eq "$FL_TMP/data.bin" "$(get_prop taken Source)" "Source of the first mapping"
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_of "$DEV")" "content of the first mapping"
assert_eq 1 "$(loop_devices_backed_by_run_dir | wc -l)" "loop devices backed by the run directory"
ctl unmap taken
assert_nothing_left taken

step "unmap of unknown names and devices"
expect_error NotFound flbus unmap no-such-name
assert_contains "$ERR_OUT" no-such-name "NotFound message"
expect_error NotFound flbus unmap /dev/loop999999
expect_failure 'not.?found|no such|no mapping|unknown|does not exist' ctl unmap no-such-name
assert_nothing_mapped
