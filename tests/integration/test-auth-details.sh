#!/bin/bash
# test-auth-details: polkit rules see the details that fuseloopd passes with each check
# (action.lookup): "name" for every action, "path" (the path the daemon opens, after decoding a
# file:// URI) for map-uri, "owner" (the owner's uid, in decimal) for unmap-other. Rules that grant
# by name, path and owner let exactly the matching calls through. A rule that answers AUTH_ADMIN
# turns into org.freedesktop.DBus.Error.InteractiveAuthorizationRequired for a call without
# ALLOW_INTERACTIVE_AUTHORIZATION, and into AccessDenied for one with it, since no authentication
# agent runs here. A rule that grants map-uri below a directory cannot be got around: paths with
# "." or ".." are InvalidSource before polkit is asked, and for a caller other than root the
# daemon follows no symbolic link when it opens the path (root may).
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

ACCESS_DENIED=org.freedesktop.DBus.Error.AccessDenied
INTERACTIVE=org.freedesktop.DBus.Error.InteractiveAuthorizationRequired

make_test_user U
make_test_user V
UID_U=$(id -u "$U")
UID_V=$(id -u "$V")
make_data_file "$FL_TMP/data.img" 1
# MapURI makes the daemon open the path as root: a file the user cannot read itself.
mkdir -m 0700 "$FL_TMP/secret"
head -c $((1 << 20)) /dev/urandom >"$FL_TMP/secret/uri-ok.img"
cp "$FL_TMP/secret/uri-ok.img" "$FL_TMP/secret/other.img"
chmod 0600 "$FL_TMP/secret/"*.img
URI_OK=$FL_TMP/secret/uri-ok.img
# A directory the user owns, below which a rule grants map-uri: whatever the user puts there must
# not lead the daemon (root) elsewhere.
PUB=$FL_TMP/pub
mkdir -m 0755 "$PUB"
chown "$U" "$PUB"

add_polkit_rule RULE <<EOF
polkit.addRule(function(action, subject) {
        if (subject.user != "$U")
                return polkit.Result.NOT_HANDLED;
        var name = action.lookup("name") || "";
        if (action.id == "org.proxmox.fuseloop.map") {
                if (name.indexOf("ok-") == 0)
                        return polkit.Result.YES;
                if (name.indexOf("ask-") == 0)
                        return polkit.Result.AUTH_ADMIN;
                return polkit.Result.NO;
        }
        if (action.id == "org.proxmox.fuseloop.map-uri") {
                if (name == "uri-ok" && action.lookup("path") == "$URI_OK")
                        return polkit.Result.YES;
                if (name.indexOf("pub-") == 0 && (action.lookup("path") || "").indexOf("$PUB/") == 0)
                        return polkit.Result.YES;
                if (name.indexOf("ask-") == 0)
                        return polkit.Result.AUTH_ADMIN;
                return polkit.Result.NO;
        }
        if (action.id == "org.proxmox.fuseloop.unmap-other") {
                if (action.lookup("owner") == "$UID_V" && name.indexOf("v-") == 0)
                        return polkit.Result.YES;
                return polkit.Result.NO;
        }
        return polkit.Result.NOT_HANDLED;
});

polkit.addRule(function(action, subject) {
        if (subject.user == "$V" && action.id == "org.proxmox.fuseloop.map")
                return polkit.Result.YES;
        return polkit.Result.NOT_HANDLED;
});
EOF
wait_polkit 30 "$U" org.proxmox.fuseloop.map name ok-probe
wait_polkit 30 "$V" org.proxmox.fuseloop.map name anything
polkit_refuses "$U" org.proxmox.fuseloop.map name no-probe || fail "the rule lets $U map 'no-probe'"
start_daemon
start_monitor

step "map: the name decides"
OUT=$(flbus_as "$U" map-fd ok-1 "$FL_TMP/data.img") || fail "Map ok-1 as $U failed: $OUT"
DEV=${OUT#* }
assert_eq "$(sha256_of "$FL_TMP/data.img")" "$(sha256_of "$DEV")" "sha256 of $DEV"
assert_eq "$UID_U" "$(get_prop ok-1 OwnerUID)" "OwnerUID of ok-1"
expect_error "$ACCESS_DENIED" flbus_as "$U" map-fd no-1 "$FL_TMP/data.img"
expect_error "$ACCESS_DENIED" flbus_as "$U" map-fd xok-1 "$FL_TMP/data.img"
assert_nothing_left no-1
assert_nothing_left xok-1

step "AUTH_ADMIN: InteractiveAuthorizationRequired without the flag, AccessDenied with it (no agent)"
expect_error "$INTERACTIVE" flbus_as "$U" map-fd ask-1 "$FL_TMP/data.img"
assert_no_match "$ACCESS_DENIED" "$ERR_OUT" "error of a Map that needs a password"
# fuseloopctl without a terminal does not allow interactive authorization either.
expect_failure 'authentication|denied|may not' ctl_as "$U" map ask-2 "$FL_TMP/data.img" </dev/null
expect_error "$INTERACTIVE" flbus_as "$U" map-uri ask-3 "$URI_OK"
expect_failure 'interactive|authentication is required' as_user "$U" busctl --system --auto-start=no \
        --allow-interactive-authorization=no call "$FL_BUS" "$FL_PATH" "$FL_IFACE" MapURI 'ssa{sv}' ask-4 "$URI_OK" 0
# With the flag, polkit would ask an agent; there is none, so the answer is no. (Replying
# InteractiveAuthorizationRequired to a call that allowed it would make clients retry in vain.)
expect_error "$ACCESS_DENIED" flbus_as "$U" --interactive map-fd ask-5 "$FL_TMP/data.img"
expect_error "$ACCESS_DENIED" flbus_as "$U" --interactive map-uri ask-6 "$URI_OK"
for n in ask-1 ask-2 ask-3 ask-4 ask-5 ask-6; do assert_nothing_left "$n"; done

step "map-uri: name and path decide; the path is the one the daemon opens"
! as_user "$U" cat "$URI_OK" >/dev/null 2>&1 || fail "$U can read $URI_OK itself"
expect_error "$ACCESS_DENIED" flbus_as "$U" map-uri uri-ok "$FL_TMP/secret/other.img"
expect_error "$ACCESS_DENIED" flbus_as "$U" map-uri uri-no "$URI_OK"
assert_nothing_left uri-ok
assert_nothing_left uri-no
OUT=$(flbus_as "$U" map-uri uri-ok "$URI_OK") || fail "MapURI uri-ok as $U failed: $OUT"
DEV=${OUT#* }
assert_eq "$(sha256_of "$URI_OK")" "$(sha256_of "$DEV")" "sha256 of $DEV"
assert_eq "$UID_U" "$(get_prop uri-ok OwnerUID)" "OwnerUID of uri-ok"
assert_eq "$URI_OK" "$(get_prop uri-ok Source)" "Source of uri-ok"
ctl_as "$U" unmap uri-ok || fail "$U could not unmap its uri-ok"
assert_nothing_left uri-ok
# A file:// URI, percent-encoded: the rule sees the decoded path.
OUT=$(flbus_as "$U" map-uri uri-ok "file://$FL_TMP/secret/uri%2Dok.img") ||
        fail "MapURI uri-ok file://...uri%2Dok.img as $U failed: $OUT"
assert_eq "$URI_OK" "$(get_prop uri-ok Source)" "Source of uri-ok mapped by a file:// URI"
flbus_as "$U" unmap uri-ok || fail "$U could not unmap its uri-ok"
assert_nothing_left uri-ok

step "map-uri below a granted directory: no way out through '..' or symbolic links"
as_user "$U" cp "$FL_TMP/data.img" "$PUB/own.img"
as_user "$U" ln -s ../secret/other.img "$PUB/link.img"
as_user "$U" ln -s ../secret "$PUB/dir"
as_user "$U" mkdir "$PUB/sub"
OUT=$(flbus_as "$U" map-uri pub-own "$PUB/own.img") || fail "MapURI pub-own as $U failed: $OUT"
DEV=${OUT#* }
assert_eq "$(sha256_of "$FL_TMP/data.img")" "$(sha256_of "$DEV")" "sha256 of $DEV"
flbus_as "$U" unmap pub-own || fail "$U could not unmap pub-own"
expect_error InvalidSource flbus_as "$U" map-uri pub-dotdot "$PUB/../secret/other.img"
expect_error InvalidSource flbus_as "$U" map-uri pub-dotdot "$PUB/sub/../../secret/other.img"
expect_error InvalidSource flbus_as "$U" map-uri pub-dotdot "file://$PUB/%2E%2E/secret/other.img"
expect_error InvalidSource flbus_as "$U" map-uri pub-dot "$PUB/./own.img"
expect_error InvalidSource flbus_as "$U" map-uri pub-link "$PUB/link.img"
assert_contains "$ERR_OUT" "symbolic link" "error of a MapURI through a symbolic link"
expect_error InvalidSource flbus_as "$U" map-uri pub-dir "$PUB/dir/other.img"
for n in pub-own pub-dotdot pub-dot pub-link pub-dir; do assert_nothing_left "$n"; done
# Root is trusted with symbolic links.
OUT=$(flbus map-uri root-link "$PUB/link.img") || fail "MapURI root-link as root failed: $OUT"
DEV=${OUT#* }
assert_eq "$(sha256_of "$FL_TMP/secret/other.img")" "$(sha256_of "$DEV")" "sha256 of $DEV"
ctl unmap root-link
assert_nothing_left root-link

step "unmap-other: owner and name decide"
ctl_map_as "$V" v-1 "$FL_TMP/data.img" >/dev/null
ctl_map_as "$V" w-1 "$FL_TMP/data.img" >/dev/null
ctl_map v-root "$FL_TMP/data.img" >/dev/null
assert_eq "$UID_V" "$(get_prop v-1 OwnerUID)" "OwnerUID of v-1"
expect_error "$ACCESS_DENIED" flbus_as "$U" unmap w-1
expect_error "$ACCESS_DENIED" flbus_as "$U" unmap v-root
expect_error "$ACCESS_DENIED" flbus_as "$U" unmap-object v-root
# V has no unmap-other rule at all: U's mapping stays U's.
expect_error "$ACCESS_DENIED" flbus_as "$V" unmap ok-1
OUT=$(flbus_as "$U" unmap v-1 2>&1) || fail "$U could not unmap v-1 (owner $UID_V): $OUT"
wait_signal 10 "^MappingRemoved v-1 $(mapping_path v-1) unmapped$"
assert_nothing_left v-1
assert_eq "ok-1 v-root w-1" "$(list_names | sort | tr '\n' ' ' | sed 's/ $//')" "mappings left"

step "cleanup"
ctl_as "$U" unmap ok-1
ctl_as "$V" unmap w-1
ctl unmap v-root
assert_nothing_mapped
