#!/bin/bash
# test-completion: the bash completion of fuseloopctl (completion/fuseloopctl.bash), loaded into
# a bash without the bash-completion package's helpers and driven the way bash drives it
# (COMP_WORDS split at '=', COMP_CWORD), completes commands, each command's options, option
# values, files and directories, and the names (and for unmap the devices) of the mappings the
# real daemon has right now: a mapping appears once mapped and is gone once unmapped.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

COMPLETION=$FUSELOOP_SRC/completion/fuseloopctl.bash
head -c $((1 << 20)) /dev/urandom >"$FL_TMP/data.bin"
mkdir -p "$FL_TMP/dir-a" "$FL_TMP/dir-b"
start_daemon

# complete LINE: what completing at the end of LINE offers, sorted, one per line. LINE is split
# into words like bash does for completion ('=' is a word of its own); a trailing blank starts a
# new, empty word.
complete_line() {
        bash --norc --noprofile -c '
                set -u
                . "$1"
                line=$2
                read -r -a COMP_WORDS <<<"${line//=/ = }"
                [ "${line: -1}" = " " ] && COMP_WORDS+=("")
                COMP_WORDS[0]=$3
                COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
                COMP_LINE=$line
                COMP_POINT=${#line}
                _fuseloopctl fuseloopctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]:-}"
                printf "%s\n" "${COMPREPLY[@]}" | sort' bash "$COMPLETION" "$1" "$FUSELOOPCTL" ||
                fail "completing '$1' failed"
}

# offers LINE WORD...: each WORD is offered for LINE.
offers() {
        local line=$1 out w

        shift
        out=$(complete_line "$line")
        for w; do
                grep -qxF -- "$w" <<<"$out" || fail "completing '$line' does not offer '$w'; it offers: $(echo $out)"
        done
}

# offers_not LINE WORD...: no WORD is offered for LINE.
offers_not() {
        local line=$1 out w

        shift
        out=$(complete_line "$line")
        for w; do
                ! grep -qxF -- "$w" <<<"$out" || fail "completing '$line' offers '$w'; it offers: $(echo $out)"
        done
}

step "commands and options"
assert_eq "list map monitor status unmap wait" "$(complete_line 'fuseloopctl ' | xargs)" "commands"
assert_eq "map monitor" "$(complete_line 'fuseloopctl m' | xargs)" "commands starting with m"
offers 'fuseloopctl --' --help --version --no-ask-password
offers 'fuseloopctl map --' --partscan --offset --size --sector-size --direct-io= --bind --timeout --untrusted \
        --mount --partition --no-ask-password
offers_not 'fuseloopctl map --' --lazy --json --removed
offers 'fuseloopctl unmap --' --lazy
offers 'fuseloopctl list --' --json --no-legend --bytes
offers 'fuseloopctl wait --' --removed --timeout
offers 'fuseloopctl monitor --' --json

step "option values"
assert_eq "short pretty" "$(complete_line 'fuseloopctl list --json=' | sort -r | xargs)" "--json= values"
assert_eq "pretty" "$(complete_line 'fuseloopctl status --json=p' | xargs)" "--json=p"
assert_eq "off on" "$(complete_line 'fuseloopctl map --direct-io=' | xargs)" "--direct-io= values"
assert_eq "1024 2048 4096 512" "$(complete_line 'fuseloopctl map --sector-size ' | xargs)" "--sector-size values"
assert_eq "" "$(complete_line 'fuseloopctl map --offset ' | xargs)" "--offset takes a number"

step "files for SOURCE, directories for --mount"
offers "fuseloopctl map name $FL_TMP/da" "$FL_TMP/data.bin"
offers "fuseloopctl map --mount $FL_TMP/dir" "$FL_TMP/dir-a" "$FL_TMP/dir-b"
offers_not "fuseloopctl map --mount $FL_TMP/da" "$FL_TMP/data.bin"
# After --mount DIR, the next word is NAME (nothing to offer), then SOURCE.
offers "fuseloopctl map --mount $FL_TMP/dir-a name $FL_TMP/da" "$FL_TMP/data.bin"
assert_eq "" "$(complete_line 'fuseloopctl map ' | xargs)" "NAME of map is free"

step "mapping names from the daemon"
assert_eq "" "$(complete_line 'fuseloopctl status ' | xargs)" "names with nothing mapped"
DEV_A=$(ctl_map comp-alpha "$FL_TMP/data.bin")
DEV_B=$(ctl_map comp-beta "$FL_TMP/data.bin")
assert_eq "comp-alpha comp-beta" "$(complete_line 'fuseloopctl status comp' | xargs)" "status names"
assert_eq "comp-beta" "$(complete_line 'fuseloopctl wait comp-b' | xargs)" "wait names"
offers 'fuseloopctl unmap ' comp-alpha comp-beta "$DEV_A" "$DEV_B"
offers 'fuseloopctl --no-ask-password unmap --lazy ' comp-alpha
assert_eq "" "$(complete_line 'fuseloopctl status comp-alpha ' | xargs)" "only one NAME for status"
ctl unmap comp-alpha
offers_not 'fuseloopctl unmap ' comp-alpha "$DEV_A"
offers 'fuseloopctl unmap ' comp-beta
ctl unmap comp-beta
assert_eq "" "$(complete_line 'fuseloopctl unmap ' | xargs)" "names after unmap"
assert_nothing_mapped
