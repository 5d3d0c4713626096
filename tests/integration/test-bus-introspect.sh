#!/bin/bash
# test-bus-introspect: what the daemon serves for org.proxmox.FuseLoop1 (manager object) and
# org.proxmox.FuseLoop1.Mapping (a mapping object) equals dbus/org.proxmox.FuseLoop1.xml,
# interface by interface: methods, arguments, signals, properties, annotations. The manager
# object also implements org.freedesktop.DBus.ObjectManager.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

XML=$FUSELOOP_SRC/dbus/org.proxmox.FuseLoop1.xml
[ -r "$XML" ] || fail "$XML is missing"
head -c $((1 << 20)) /dev/urandom >"$FL_TMP/data.bin"
start_daemon

step "manager object"
busctl_ introspect --xml-interface "$FL_BUS" "$FL_PATH" >"$FL_TMP/manager.xml"
flbus compare-xml "$FL_TMP/manager.xml" "$XML" "$FL_IFACE" ||
        fail "the manager interface differs from $XML (above); served: $(cat "$FL_TMP/manager.xml")"
grep -q '<interface name="org.freedesktop.DBus.ObjectManager">' "$FL_TMP/manager.xml" ||
        fail "the manager object does not implement org.freedesktop.DBus.ObjectManager"

step "mapping object"
DEV=$(ctl_map introspect-me "$FL_TMP/data.bin")
busctl_ introspect --xml-interface "$FL_BUS" "$(mapping_path introspect-me)" >"$FL_TMP/mapping.xml"
flbus compare-xml "$FL_TMP/mapping.xml" "$XML" "$FL_MAPPING_IFACE" ||
        fail "the mapping interface differs from $XML (above); served: $(cat "$FL_TMP/mapping.xml")"

step "every property of the mapping can be read"
flbus props introspect-me >"$FL_TMP/props"
cat "$FL_TMP/props"
for p in Name Device BackingFile Size Offset SectorSize PartitionScan Source State OwnerUID \
        CreatedUSec BytesRead ReadRequests ReadErrors; do
        grep -q "^$p=" "$FL_TMP/props" || fail "property $p missing from GetAll"
done
assert_eq "Device=$DEV" "$(grep '^Device=' "$FL_TMP/props")" "Device from GetAll"

step "the mapping directory node lists the mapping"
busctl_ tree --list "$FL_BUS" | grep -qxF "$(mapping_path introspect-me)" ||
        fail "$(mapping_path introspect-me) is not in the object tree"
ctl unmap introspect-me
assert_nothing_left introspect-me
