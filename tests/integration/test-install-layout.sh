#!/bin/bash
# test-install-layout: `meson install --destdir` of a build configured with --prefix=/usr puts
# each file where Debian's programs look for it: the binaries in /usr/sbin and /usr/bin, the bus
# policy where dbus-daemon reads it (/usr/share/dbus-1/system.d), the activation file in its
# system-services directory, the interface XML, the polkit actions where polkitd reads them, the
# unit in systemd's system unit directory, the udev rules in udev's rules.d, the bash completion
# where bash-completion loads it and the manual pages; nothing else is installed. The installed
# activation file and unit start /usr/sbin/fuseloopd. The polkit policy and the bus policy are
# well-formed XML. Skipped for a build with another prefix. Installs nothing outside $FL_TMP.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

command -v meson >/dev/null || skip "meson is not installed"
DEST=$FL_TMP/root

step "build options"
meson introspect --buildoptions "$FUSELOOP_BUILD" >"$FL_TMP/buildoptions.json" ||
        fail "meson introspect --buildoptions $FUSELOOP_BUILD failed"
PREFIX=$("$PYTHON" -c '
import json, sys
print(next(o["value"] for o in json.load(open(sys.argv[1])) if o["name"] == "prefix"))
' "$FL_TMP/buildoptions.json") || fail "no prefix in the build options of $FUSELOOP_BUILD"
log "prefix: $PREFIX"
[ "$PREFIX" = /usr ] || skip "$FUSELOOP_BUILD is configured with --prefix=$PREFIX, not /usr"

# systemd's own answer where its pkg-config file is installed (Debian 12: /lib/systemd/system);
# otherwise either place systemd reads system units from.
UNIT_DIRS=(/lib/systemd/system /usr/lib/systemd/system)
if UNIT_DIR=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null) && [ -n "$UNIT_DIR" ]; then
        UNIT_DIRS=("$UNIT_DIR")
fi
log "systemd system unit directory: ${UNIT_DIRS[*]}"
# Where udevd reads rules from (Debian 12: /lib/udev; the same directory as /usr/lib/udev).
UDEV_DIR=$(pkg-config --variable=udevdir udev 2>/dev/null) || true
UDEV_RULES=${UDEV_DIR:-/usr/lib/udev}/rules.d/60-fuseloop.rules
log "udev rules: $UDEV_RULES"

step "meson install --destdir"
meson install -C "$FUSELOOP_BUILD" --no-rebuild --destdir "$DEST" --quiet >"$FL_TMP/install.log" 2>&1 || {
        cat "$FL_TMP/install.log"
        fail "meson install --destdir $DEST failed"
}
(cd "$DEST" && find . ! -type d | sed 's|^\.||' | sort) >"$FL_TMP/installed"
cat "$FL_TMP/installed"

step "each file is where Debian looks for it"
UNIT=
for d in "${UNIT_DIRS[@]}"; do
        if [ -e "$DEST$d/fuseloopd.service" ]; then
                UNIT=$d/fuseloopd.service
                break
        fi
done
[ -n "$UNIT" ] || fail "fuseloopd.service is not installed in ${UNIT_DIRS[*]}: $(grep fuseloopd.service "$FL_TMP/installed" || echo nowhere)"

EXPECTED=(
        /usr/sbin/fuseloopd
        /usr/bin/fuseloopctl
        /usr/share/dbus-1/system.d/org.proxmox.FuseLoop1.conf
        /usr/share/dbus-1/system-services/org.proxmox.FuseLoop1.service
        /usr/share/dbus-1/interfaces/org.proxmox.FuseLoop1.xml
        /usr/share/polkit-1/actions/org.proxmox.fuseloop.policy
        "$UNIT"
        "$UDEV_RULES"
        /usr/share/bash-completion/completions/fuseloopctl
        /usr/share/man/man8/fuseloopd.8
        /usr/share/man/man1/fuseloopctl.1
        /usr/share/man/man5/org.proxmox.FuseLoop1.5
)
for f in "${EXPECTED[@]}"; do
        [ -f "$DEST$f" ] || fail "$f is not installed"
        [ ! -L "$DEST$f" ] || fail "$f is installed as a symbolic link"
done
for f in /usr/sbin/fuseloopd /usr/bin/fuseloopctl; do
        [ -x "$DEST$f" ] || fail "$f is not executable"
done
for f in "${EXPECTED[@]:2}"; do
        MODE=$(stat -c %a "$DEST$f")
        assert_eq 644 "$MODE" "mode of $f"
done
# Anything else (but documentation) would land where nobody looks for it.
UNEXPECTED=$(printf '%s\n' "${EXPECTED[@]}" | sort | comm -13 - "$FL_TMP/installed" |
        grep -v -E '^/usr/share/(man|doc)/' || true)
[ -z "$UNEXPECTED" ] || fail "installed, but not expected:"$'\n'"$UNEXPECTED"

step "installed data files are the ones in the tree and the build"
same_file() { # SOURCE INSTALLED
        cmp "$1" "$DEST$2" >/dev/null || fail "installed $2 differs from $1"
}
same_file "$FUSELOOP_SRC/dbus/org.proxmox.FuseLoop1.conf" /usr/share/dbus-1/system.d/org.proxmox.FuseLoop1.conf
same_file "$FUSELOOP_SRC/dbus/org.proxmox.FuseLoop1.xml" /usr/share/dbus-1/interfaces/org.proxmox.FuseLoop1.xml
same_file "$FUSELOOP_SRC/polkit/org.proxmox.fuseloop.policy" /usr/share/polkit-1/actions/org.proxmox.fuseloop.policy
same_file "$FUSELOOP_BUILD/org.proxmox.FuseLoop1.service" /usr/share/dbus-1/system-services/org.proxmox.FuseLoop1.service
same_file "$FUSELOOP_BUILD/fuseloopd.service" "$UNIT"
same_file "$FUSELOOP_SRC/udev/60-fuseloop.rules" "$UDEV_RULES"
same_file "$FUSELOOP_SRC/completion/fuseloopctl.bash" /usr/share/bash-completion/completions/fuseloopctl
for p in fuseloopd.8 fuseloopctl.1 org.proxmox.FuseLoop1.5; do
        same_file "$FUSELOOP_BUILD/man/$p" "/usr/share/man/man${p##*.}/$p"
done
same_file "$FUSELOOP_BUILD/fuseloopd" /usr/sbin/fuseloopd
same_file "$FUSELOOP_BUILD/fuseloopctl" /usr/bin/fuseloopctl

step "the installed activation file and unit start /usr/sbin/fuseloopd"
ACT=$DEST/usr/share/dbus-1/system-services/org.proxmox.FuseLoop1.service
assert_eq 1 "$(grep -c '^Exec=' "$ACT")" "number of Exec= lines in the activation file"
assert_eq "Exec=/usr/sbin/fuseloopd" "$(grep '^Exec=' "$ACT")" "Exec= of the installed activation file"
assert_eq "Name=$FL_BUS" "$(grep '^Name=' "$ACT")" "Name= of the installed activation file"
assert_eq "SystemdService=fuseloopd.service" "$(grep '^SystemdService=' "$ACT")" \
        "SystemdService= of the installed activation file"
assert_eq "ExecStart=/usr/sbin/fuseloopd" "$(grep '^ExecStart=' "$DEST$UNIT")" "ExecStart= of the installed unit"
! grep -q '@[a-z_]*@' "$ACT" "$DEST$UNIT" || fail "unsubstituted @variable@ in the installed activation file or unit"

step "the polkit policy and the bus policy are well-formed XML"
for f in /usr/share/polkit-1/actions/org.proxmox.fuseloop.policy \
        /usr/share/dbus-1/system.d/org.proxmox.FuseLoop1.conf \
        /usr/share/dbus-1/interfaces/org.proxmox.FuseLoop1.xml; do
        "$PYTHON" -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$DEST$f" \
                >"$FL_TMP/xml.log" 2>&1 || fail "$f is not well-formed XML: $(tail -n 1 "$FL_TMP/xml.log")"
        if command -v xmllint >/dev/null; then
                xmllint --noout --nonet "$DEST$f" >"$FL_TMP/xml.log" 2>&1 ||
                        fail "xmllint: $f is not well-formed XML: $(cat "$FL_TMP/xml.log")"
        fi
        log "$f: well-formed"
done
# The root elements the readers expect.
"$PYTHON" -c '
import sys, xml.dom.minidom
for path, root in zip(sys.argv[1::2], sys.argv[2::2]):
    got = xml.dom.minidom.parse(path).documentElement.tagName
    if got != root:
        sys.exit("%s: root element <%s>, expected <%s>" % (path, got, root))
' "$DEST/usr/share/polkit-1/actions/org.proxmox.fuseloop.policy" policyconfig \
        "$DEST/usr/share/dbus-1/system.d/org.proxmox.FuseLoop1.conf" busconfig \
        "$DEST/usr/share/dbus-1/interfaces/org.proxmox.FuseLoop1.xml" node ||
        fail "an XML file has the wrong root element (above)"
