#!/bin/bash
# test-input-sources: bad sources are refused with InvalidSource and leave nothing behind:
# a directory fd, a write-only fd, an O_PATH fd and an empty file (Map, fd crossing the bus from
# python), a missing file, a relative path, a directory, an empty file and unsupported URI
# schemes, paths with empty, "." or ".." components and a file:// URI that decodes to bytes that
# are not UTF-8 (MapURI); fuseloopctl refuses a missing file before asking the daemon anything. A
# source whose file name is not UTF-8 maps, and its name is shown with '?' for the odd byte, so
# List and the Source property keep working (D-Bus strings must be UTF-8).
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

head -c $((1 << 20)) /dev/urandom >"$FL_TMP/data.bin"
: >"$FL_TMP/empty.bin"
mkdir "$FL_TMP/dir"
start_daemon

step "Map with bad fds"
expect_error InvalidSource flbus map-fd src-test "$FL_TMP/dir" --open dir
expect_error InvalidSource flbus map-fd src-test "$FL_TMP/data.bin" --open wronly
expect_error InvalidSource flbus map-fd src-test "$FL_TMP/data.bin" --open path
expect_error InvalidSource flbus map-fd src-test "$FL_TMP/empty.bin"
assert_nothing_mapped

step "MapURI with bad sources"
expect_error InvalidSource flbus map-uri src-test "$FL_TMP/missing.bin"
assert_contains "$ERR_OUT" "$FL_TMP/missing.bin" "InvalidSource message"
expect_error InvalidSource flbus map-uri src-test "file://$FL_TMP/missing.bin"
expect_error InvalidSource flbus map-uri src-test data.bin
expect_error InvalidSource flbus map-uri src-test "./$FL_TMP/data.bin"
expect_error InvalidSource flbus map-uri src-test ""
expect_error InvalidSource flbus map-uri src-test "$FL_TMP/dir"
expect_error InvalidSource flbus map-uri src-test "$FL_TMP/empty.bin"
expect_error InvalidSource flbus map-uri src-test "http://localhost/data.bin"
expect_error InvalidSource flbus map-uri src-test "bogus:$FL_TMP/data.bin"
expect_error InvalidSource flbus map-uri src-test "$FL_TMP/../${FL_TMP#/tmp/}/data.bin"
expect_error InvalidSource flbus map-uri src-test "$FL_TMP/./data.bin"
expect_error InvalidSource flbus map-uri src-test "$FL_TMP//data.bin"
expect_error InvalidSource flbus map-uri src-test "$FL_TMP/dir/"
# %FF decodes to a byte that is not UTF-8: it could not even be quoted back.
expect_error InvalidSource flbus map-uri src-test "file://$FL_TMP/data%FF.bin"
assert_nothing_mapped

step "busctl shows a readable message"
OUT=$(busctl_ call "$FL_BUS" "$FL_PATH" "$FL_IFACE" MapURI 'ssa{sv}' src-test relative/path 0 2>&1) &&
        fail "MapURI with a relative path succeeded: $OUT"
assert_contains "$OUT" relative/path "busctl error message"

step "fuseloopctl with a missing file fails before any bus call"
expect_failure 'missing\.bin|no such file' ctl map ctl-missing "$FL_TMP/missing.bin"
# Nothing reached the daemon: it never heard the name.
if grep -q ctl-missing "$FL_DAEMON_LOG"; then
        grep ctl-missing "$FL_DAEMON_LOG"
        fail "the daemon saw a request for 'ctl-missing'"
fi
# Also without any bus at all.
expect_failure 'missing\.bin|no such file' \
        env DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/bus "$FUSELOOPCTL" map ctl-missing "$FL_TMP/missing.bin"
assert_nothing_mapped

step "a source whose file name is not UTF-8"
LATIN1=$FL_TMP/caf$'\xe9'.bin
cp "$FL_TMP/data.bin" "$LATIN1"
OUT=$(flbus map-fd src-latin1 "$LATIN1") || fail "Map of a file named in Latin-1 failed: $OUT"
DEV=${OUT#* }
assert_eq "$FL_TMP/caf?.bin" "$(get_prop src-latin1 Source)" "Source of src-latin1"
assert_eq src-latin1 "$(list_names)" "List with a Latin-1 file name"
ctl list >/dev/null || fail "fuseloopctl list failed with a Latin-1 file name"
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_of "$DEV")" "content of $DEV"
flbus unmap src-latin1
assert_nothing_left src-latin1

step "a good source still works afterwards"
OUT=$(flbus map-fd src-test "$FL_TMP/data.bin")
DEV=${OUT#* }
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_of "$DEV")" "content of $DEV"
flbus unmap src-test
assert_nothing_left src-test
