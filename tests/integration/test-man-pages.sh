#!/bin/bash
# test-man-pages: the manual pages fuseloopd(8), fuseloopctl(1) and org.proxmox.FuseLoop1(5) are
# built from man/*.scd, installed where man(1) finds them (for a build with prefix /usr) and
# render without warnings; they follow the programs and the bus API: every long option that
# "--help" of either program prints is in its page, every exit code of "fuseloopctl --help" in
# fuseloopctl(1), and every method, signal and property of dbus/org.proxmox.FuseLoop1.xml, every
# Map option and every error name in org.proxmox.FuseLoop1(5).
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

command -v man >/dev/null || skip "man (man-db) is not installed"
PAGES=(fuseloopd.8 fuseloopctl.1 org.proxmox.FuseLoop1.5)

# render PAGE: the page as man shows it, plain text; fails on any warning of groff or man.
render() {
        MANWIDTH=100 MAN_KEEP_FORMATTING=0 man --warnings -l "$FUSELOOP_BUILD/man/$1" \
                2>"$FL_TMP/$1.warnings" | col -b >"$FL_TMP/$1.txt"
        [ ! -s "$FL_TMP/$1.warnings" ] || fail "man reports for $1:"$'\n'"$(cat "$FL_TMP/$1.warnings")"
        [ "$(wc -l <"$FL_TMP/$1.txt")" -gt 20 ] || fail "$1 renders to almost nothing: $(cat "$FL_TMP/$1.txt")"
}

# in_page PAGE WORD WHAT: WORD occurs in the rendered PAGE.
in_page() {
        grep -qF -- "$2" "$FL_TMP/$1.txt" || fail "$3 '$2' is not in $1"
}

step "built and rendered without warnings"
for p in "${PAGES[@]}"; do
        [ -s "$FUSELOOP_BUILD/man/$p" ] || fail "$FUSELOOP_BUILD/man/$p was not built"
        render "$p"
        log "$p: $(wc -l <"$FL_TMP/$p.txt") lines"
done

step "installed where man finds them"
PREFIX=$(meson introspect --buildoptions "$FUSELOOP_BUILD" |
        "$PYTHON" -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
if [ "$PREFIX" = /usr ]; then
        for p in "${PAGES[@]}"; do
                SECTION=${p##*.}
                INSTALLED=/usr/share/man/man$SECTION/$p
                [ -f "$INSTALLED" ] || fail "$INSTALLED is not installed (meson install)"
                cmp -s "$INSTALLED" "$FUSELOOP_BUILD/man/$p" || fail "$INSTALLED differs from the built page"
                assert_eq "$INSTALLED" "$(man -w "$SECTION" "${p%.*}")" "where man finds ${p%.*}($SECTION)"
        done
else
        log "build prefix $PREFIX: the installed pages are not checked"
fi

step "every option of --help is documented"
for prog in fuseloopctl fuseloopd; do
        [ "$prog" = fuseloopctl ] && BIN=$FUSELOOPCTL || BIN=$FUSELOOPD
        [ "$prog" = fuseloopctl ] && PAGE=fuseloopctl.1 || PAGE=fuseloopd.8
        OPTS=$("$BIN" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
        [ "$(wc -l <<<"$OPTS")" -ge 5 ] || fail "$prog --help lists only: $OPTS"
        for o in $OPTS; do
                in_page "$PAGE" "$o" "option of $prog --help"
        done
        log "$prog: $(wc -l <<<"$OPTS") options, all in $PAGE"
done
# Every command of fuseloopctl --help, and each under COMMANDS.
CMDS=$("$FUSELOOPCTL" --help | sed -n '/^Commands:/,/^$/p' | grep -E '^  [a-z]' | awk '{print $1}')
assert_eq "map unmap list status monitor wait" "$(echo $CMDS)" "commands in fuseloopctl --help"
for c in $CMDS; do
        grep -qE "^ +$c( |$)" "$FL_TMP/fuseloopctl.1.txt" || fail "command '$c' has no entry in fuseloopctl.1"
done

step "every exit code of fuseloopctl --help is in EXIT STATUS"
CODES=$("$FUSELOOPCTL" --help | sed -n '/^Exit codes:/,/^$/p' | grep -oE '(^|[ ,:])[0-9]+ [a-z]' | grep -oE '[0-9]+')
assert_eq "0 1 2 3 4 5 6" "$(echo $CODES)" "exit codes in fuseloopctl --help"
EXIT=$(sed -n '/^EXIT STATUS/,/^[A-Z]/p' "$FL_TMP/fuseloopctl.1.txt")
for c in $CODES; do
        grep -qE "^ +$c\$" <<<"$EXIT" || fail "exit code $c is not in the EXIT STATUS of fuseloopctl.1"
done

step "the bus API page covers the interface"
XML=$FUSELOOP_SRC/dbus/org.proxmox.FuseLoop1.xml
MEMBERS=$("$PYTHON" -c '
import sys, xml.etree.ElementTree as ET
for i in ET.parse(sys.argv[1]).getroot().iter("interface"):
    print(i.get("name"))
    for m in i:
        if m.tag in ("method", "signal", "property"):
            print(m.get("name"))
' "$XML" | sort -u)
[ "$(wc -l <<<"$MEMBERS")" -ge 30 ] || fail "too few members in $XML: $MEMBERS"
for m in $MEMBERS; do
        in_page org.proxmox.FuseLoop1.5 "$m" "member of $XML"
done
for o in $(sed -n 's/^#define FUSELOOP_OPT_[A-Z_]* *"\([a-z-]*\)".*/\1/p' "$FUSELOOP_SRC/src/shared/bus-names.h"); do
        in_page org.proxmox.FuseLoop1.5 "$o" "option"
done
for e in $(sed -n 's/^#define FUSELOOP_ERROR_[A-Z_]* *FUSELOOP_ERROR_PREFIX "\([A-Za-z]*\)".*/\1/p' "$FUSELOOP_SRC/src/shared/bus-names.h"); do
        in_page org.proxmox.FuseLoop1.5 "$e" "error"
done
for a in $(sed -n 's/.*action id="\([^"]*\)".*/\1/p' "$FUSELOOP_SRC/polkit/org.proxmox.fuseloop.policy"); do
        in_page org.proxmox.FuseLoop1.5 "$a" "polkit action"
        # fuseloopctl never calls MapURI.
        [ "$a" = org.proxmox.fuseloop.map-uri ] || in_page fuseloopctl.1 "$a" "polkit action"
done
