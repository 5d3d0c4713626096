#!/bin/bash
# test-bus-polkit: an unprivileged caller (uid nobody, no polkit agent) may read (List,
# properties, introspection) but polkit refuses it Map, MapURI and Unmap of root's mapping; each
# refusal changes nothing.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

command -v setpriv >/dev/null || skip "setpriv is not installed"
# The unprivileged caller must be able to reach the data file.
make_data_file "$FL_TMP/data.bin" 2
start_daemon
DEV=$(ctl_map owned-by-root "$FL_TMP/data.bin")

as_nobody() {
        setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
                "$PYTHON" "$FL_LIB_DIR/flbus.py" "$@"
}
DENIED='org\.freedesktop\.DBus\.Error\.(AccessDenied|InteractiveAuthorizationRequired)'

step "reading is allowed"
OUT=$(as_nobody list) || fail "List as nobody failed: $OUT"
assert_eq owned-by-root "$(cut -f1 <<<"$OUT")" "List as nobody"
OUT=$(as_nobody props owned-by-root) || fail "GetAll as nobody failed: $OUT"
assert_contains "$OUT" "Device=$DEV" "properties read by nobody"

step "Map, MapURI, Unmap are refused"
expect_failure "$DENIED" as_nobody map-fd by-nobody "$FL_TMP/data.bin"
expect_failure "$DENIED" as_nobody map-uri by-nobody "$FL_TMP/data.bin"
expect_failure "$DENIED" as_nobody unmap owned-by-root
expect_failure "$DENIED" as_nobody unmap "$DEV"
expect_failure "$DENIED" as_nobody unmap-object owned-by-root
assert_nothing_left by-nobody
assert_eq owned-by-root "$(list_names)" "mappings after the refused calls"
assert_eq active "$(get_prop owned-by-root State)" "State of root's mapping"
assert_eq "$(sha256_of "$FL_TMP/data.bin")" "$(sha256_of "$DEV")" "content of $DEV"

step "validation errors do not leak past authorization either"
expect_failure "$DENIED|$FL_ERR\.InvalidName" as_nobody map-uri '../x' "$FL_TMP/data.bin"
assert_nothing_mapped_but() { [ "$(list_names)" = owned-by-root ]; }
assert_nothing_mapped_but || fail "mappings changed: $(list_names)"

ctl unmap owned-by-root
assert_nothing_left owned-by-root
