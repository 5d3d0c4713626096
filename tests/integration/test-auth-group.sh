#!/bin/bash
# test-auth-group: a polkit rule grants org.proxmox.fuseloop.map to the members of a group. Then a
# member maps (fuseloopctl and a bus Map with options) and reads back the right data; the mapping
# records its owner (OwnerUID, fuseloopctl list and status); MapURI stays refused to the member
# (admin only), Map to a user outside the group; another member of the group cannot unmap the
# owner's mapping in any form (by name, by device, the object's Unmap), nor the owner someone
# else's or root's; the owner unmaps its own in every form without any polkit action, root unmaps
# anyone's; and a user removed from the group can no longer map.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

ACCESS_DENIED=org.freedesktop.DBus.Error.AccessDenied
DENIED_MSG='denied|not allowed|may not|not authorized'

make_test_group G
make_test_user A "$G"
make_test_user B "$G"
make_test_user C
UID_A=$(id -u "$A")
UID_B=$(id -u "$B")

for f in a b r; do
        make_data_file "$FL_TMP/$f.img" 2
done

grant_to_group "$G" map "$A" "$B"
! polkit_allows "$C" org.proxmox.fuseloop.map || fail "polkit allows $C, who is not in $G, to map"
start_daemon
start_monitor

# owner_in_row OUTPUT NAME: the line of OUTPUT (fuseloopctl list) for NAME has a field that is the
# user name or the uid of $WANT_USER.
owner_in_row() {
        awk -v n="$2" -v u="$WANT_USER" -v id="$(id -u "$WANT_USER")" \
                '$1 == n { for (i = 2; i <= NF; i++) if ($i == u || $i == id) f = 1 } END { exit !f }' <<<"$1"
}

step "a member of $G maps with fuseloopctl"
DEV_A=$(ctl_map_as "$A" a-one "$FL_TMP/a.img")
wait_signal 10 "^MappingAdded a-one $(mapping_path a-one) $DEV_A$"
assert_eq "$(sha256_of "$FL_TMP/a.img")" "$(sha256_of "$DEV_A")" "sha256 of $DEV_A (mapped by $A)"
assert_eq "$UID_A" "$(get_prop a-one OwnerUID)" "OwnerUID of a-one"
assert_eq "$FL_TMP/a.img" "$(get_prop a-one Source)" "Source of a-one"
assert_eq active "$(get_prop a-one State)" "State of a-one"
OUT=$(flbus_as "$A" props a-one) || fail "GetAll as $A failed: $OUT"
assert_contains "$OUT" "OwnerUID=$UID_A" "properties of a-one read by $A"

step "fuseloopctl shows the owner"
for who in root "$A"; do
        if [ "$who" = root ]; then OUT=$(ctl list); else OUT=$(ctl_as "$who" list); fi
        log "fuseloopctl list as $who:"$'\n'"$OUT"
        WANT_USER=$A owner_in_row "$OUT" a-one ||
                fail "fuseloopctl list as $who shows neither the name $A nor the uid $UID_A in the row of a-one:"$'\n'"$OUT"
done
OUT=$(ctl_as "$A" status a-one) || fail "fuseloopctl status as $A failed: $OUT"
grep -Eq "^Owner[^:]*: (.*[^0-9a-z-])?($A|$UID_A)([^0-9a-z-]|\$)" <<<"$OUT" ||
        fail "fuseloopctl status a-one as $A shows neither $A nor $UID_A as the owner:"$'\n'"$OUT"

step "Map with an fd and options over the bus as $A"
OUT=$(flbus_as "$A" map-fd a-two "$FL_TMP/a.img" offset=t:1048576 size=t:524288) ||
        fail "Map as $A failed: $OUT"
DEV_A2=${OUT#* }
assert_eq 524288 "$(device_size "$DEV_A2")" "size of $DEV_A2"
assert_eq "$(dd if="$FL_TMP/a.img" bs=512 skip=2048 count=1024 status=none | sha256sum | cut -d' ' -f1)" \
        "$(sha256_of "$DEV_A2")" "sha256 of $DEV_A2"
assert_eq "$UID_A" "$(get_prop a-two OwnerUID)" "OwnerUID of a-two"

step "MapURI stays refused to the group member; Map to a user outside the group"
expect_error "$ACCESS_DENIED" flbus_as "$A" map-uri a-uri "$FL_TMP/a.img"
expect_error "$ACCESS_DENIED" flbus_as "$C" map-fd c-one "$FL_TMP/a.img"
expect_failure "$DENIED_MSG" ctl_as "$C" map c-one "$FL_TMP/a.img"
assert_nothing_left a-uri
assert_nothing_left c-one

step "$B (same group) cannot unmap $A's mapping in any form, nor can $C"
expect_error "$ACCESS_DENIED" flbus_as "$B" unmap a-one
expect_error "$ACCESS_DENIED" flbus_as "$B" unmap "$DEV_A"
expect_error "$ACCESS_DENIED" flbus_as "$B" unmap a-one lazy=b:true
expect_error "$ACCESS_DENIED" flbus_as "$B" unmap-object a-one
expect_failure "$DENIED_MSG" ctl_as "$B" unmap a-one
expect_failure "$DENIED_MSG" ctl_as "$B" unmap "$DEV_A"
expect_error "$ACCESS_DENIED" flbus_as "$C" unmap a-one
expect_error "$ACCESS_DENIED" flbus_as "$C" unmap-object a-one
assert_eq active "$(get_prop a-one State)" "State of a-one after the refused unmaps"
assert_eq "$(sha256_of "$FL_TMP/a.img")" "$(sha256_of "$DEV_A")" "sha256 of $DEV_A after the refused unmaps"
! grep -q "^MappingRemoved" "$FL_MONITOR_LOG" || fail "a mapping was removed: $(grep "^MappingRemoved" "$FL_MONITOR_LOG")"

step "$B maps its own; $A cannot unmap it nor root's"
DEV_B=$(ctl_map_as "$B" b-one "$FL_TMP/b.img")
assert_eq "$UID_B" "$(get_prop b-one OwnerUID)" "OwnerUID of b-one"
assert_eq "$(sha256_of "$FL_TMP/b.img")" "$(sha256_of "$DEV_B")" "sha256 of $DEV_B (mapped by $B)"
DEV_R=$(ctl_map r-one "$FL_TMP/r.img")
assert_eq 0 "$(get_prop r-one OwnerUID)" "OwnerUID of r-one"
expect_error "$ACCESS_DENIED" flbus_as "$A" unmap b-one
expect_error "$ACCESS_DENIED" flbus_as "$A" unmap "$DEV_B"
expect_error "$ACCESS_DENIED" flbus_as "$A" unmap-object b-one
expect_error "$ACCESS_DENIED" flbus_as "$A" unmap r-one
expect_error "$ACCESS_DENIED" flbus_as "$A" unmap "$DEV_R"
expect_error "$ACCESS_DENIED" flbus_as "$A" unmap-object r-one
assert_eq "a-one a-two b-one r-one" "$(list_names | sort | tr '\n' ' ' | sed 's/ $//')" "mappings"

step "root unmaps $B's mapping"
ctl unmap b-one
wait_signal 10 "^MappingRemoved b-one $(mapping_path b-one) unmapped$"
assert_nothing_left b-one

step "$A unmaps its own mappings: by name, by device, with the object's Unmap"
ctl_as "$A" unmap a-one || fail "fuseloopctl unmap a-one as $A failed"
wait_signal 10 "^MappingRemoved a-one $(mapping_path a-one) unmapped$"
assert_nothing_left a-one
OUT=$(flbus_as "$A" unmap "$DEV_A2" 2>&1) || fail "Unmap $DEV_A2 as $A failed: $OUT"
wait_signal 10 "^MappingRemoved a-two $(mapping_path a-two) unmapped$"
assert_nothing_left a-two
DEV_A3=$(ctl_map_as "$A" a-three "$FL_TMP/a.img")
OUT=$(flbus_as "$A" unmap-object a-three 2>&1) || fail "Mapping.Unmap of a-three as $A failed: $OUT"
wait_signal 10 "^MappingRemoved a-three $(mapping_path a-three) unmapped$"
assert_nothing_left a-three
is_not_block "$DEV_A3" || loop_released "$DEV_A3" || fail "$DEV_A3 still has a backing file"

step "a user removed from $G can no longer map"
gpasswd -d "$B" "$G" >/dev/null || fail "gpasswd -d $B $G failed"
wait_for 30 "polkitd to refuse $B" polkit_refuses "$B" org.proxmox.fuseloop.map
expect_error "$ACCESS_DENIED" flbus_as "$B" map-fd b-two "$FL_TMP/b.img"
assert_nothing_left b-two
DEV_A4=$(ctl_map_as "$A" a-four "$FL_TMP/a.img")
assert_eq "$(sha256_of "$FL_TMP/a.img")" "$(sha256_of "$DEV_A4")" "sha256 of $DEV_A4"

step "root unmaps the rest"
ctl unmap a-four
ctl unmap r-one
assert_nothing_left a-four
assert_nothing_left r-one
assert_nothing_mapped
