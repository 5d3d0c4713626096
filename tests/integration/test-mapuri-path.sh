#!/bin/bash
# test-mapuri-path: MapURI through busctl with an absolute path and with a file:// URI; the
# devices read back the image byte for byte; properties are right; unmap through the mapping
# object's own Unmap method.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

head -c $((8 << 20)) /dev/urandom >"$FL_TMP/image.raw"
start_daemon
start_monitor

step "MapURI with an absolute path"
DEV=$(busctl_map_uri by-path "$FL_TMP/image.raw")
wait_signal 5 "^MappingAdded by-path $(mapping_path by-path) $DEV\$"
assert_eq $((8 << 20)) "$(device_size "$DEV")" "size of $DEV"
cmp "$FL_TMP/image.raw" "$DEV" || fail "$DEV differs from the image"
assert_eq "$(sha256_of "$FL_TMP/image.raw")" "$(sha256_of "$DEV")" "sha256 of $DEV"
assert_eq "$FL_TMP/image.raw" "$(get_prop by-path Source)" "Source"
assert_eq "$DEV" "$(get_prop by-path Device)" "Device"
assert_eq 512 "$(get_prop by-path SectorSize)" "SectorSize"
assert_eq false "$(get_prop by-path PartitionScan)" "PartitionScan"
[ "$(get_prop by-path CreatedUSec)" -gt 0 ] || fail "CreatedUSec is not set"

step "MapURI with a file:// URI"
DEV2=$(busctl_map_uri by-uri "file://$FL_TMP/image.raw")
assert_ne "$DEV" "$DEV2" "device of the second mapping"
cmp "$FL_TMP/image.raw" "$DEV2" || fail "$DEV2 differs from the image"
# Direct I/O on the device reaches the daemon without any page cache.
assert_eq "$(sha256_of "$FL_TMP/image.raw")" \
        "$(dd if="$DEV2" iflag=direct bs=64k status=none | sha256sum | cut -d' ' -f1)" "sha256 of $DEV2 (O_DIRECT)"
assert_match "$FL_TMP/image.raw\$" "$(get_prop by-uri Source)" "Source of the file:// mapping"

step "ObjectManager lists both"
OBJS=$(flbus managed-objects)
printf '%s\n' "$OBJS"
grep -q "^$(mapping_path by-path) .*$FL_MAPPING_IFACE" <<<"$OBJS" || fail "by-path not in GetManagedObjects"
grep -q "^$(mapping_path by-uri) .*$FL_MAPPING_IFACE" <<<"$OBJS" || fail "by-uri not in GetManagedObjects"

step "unmap through the mapping objects"
busctl_ call "$FL_BUS" "$(mapping_path by-path)" "$FL_MAPPING_IFACE" Unmap 'a{sv}' 0
flbus unmap-object by-uri
wait_signal 5 "^MappingRemoved by-path $(mapping_path by-path) unmapped\$"
wait_signal 5 "^MappingRemoved by-uri $(mapping_path by-uri) unmapped\$"
assert_nothing_left by-path
assert_nothing_left by-uri
assert_nothing_mapped
