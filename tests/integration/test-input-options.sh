#!/bin/bash
# test-input-options: bad Map/MapURI options are refused with InvalidOption (offset or size
# beyond the source, size 0, unknown option, wrong D-Bus type, bad sector size, unknown
# protocol, a mount point that is relative, too long or has control characters) and leave
# nothing behind; borderline valid values work.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

SIZE=$((4 << 20))
head -c "$SIZE" /dev/urandom >"$FL_TMP/data.bin"
start_daemon

bad() { # OPTION... : refused by both MapURI and Map
        expect_error InvalidOption flbus map-uri opt-test "$FL_TMP/data.bin" "$@"
        expect_error InvalidOption flbus map-fd opt-test "$FL_TMP/data.bin" "$@"
        assert_nothing_left opt-test
        assert_nothing_mapped
}

step "offset and size beyond the source"
bad offset=t:$SIZE
bad offset=t:$((SIZE + 4096))
bad offset=t:18446744073709551615
bad size=t:$((SIZE + 512))
bad offset=t:4096 size=t:$SIZE
bad offset=t:18446744073709551104 size=t:1024
bad size=t:0

step "unknown options and wrong types"
bad no-such-option=b:true
assert_contains "$ERR_OUT" no-such-option "InvalidOption message"
bad size=s:1024
bad size=u:1024
bad offset=s:0
bad partition-scan=s:yes
bad sector-size=t:512
bad direct-io=u:1
bad protocol=b:true
bad bind-to-caller=s:true
bad untrusted=s:yes
bad mount-point=b:true

step "bad values"
bad sector-size=u:3000
bad sector-size=u:0
bad sector-size=u:256
bad sector-size=u:8192
bad protocol=s:bogus
bad mount-point=s:relative/dir
assert_contains "$ERR_OUT" "must be an absolute path" "InvalidOption message"
bad mount-point=s:
bad "mount-point=s:/mnt/a$(printf '\t')b"
assert_contains "$ERR_OUT" "control characters" "InvalidOption message"
bad "mount-point=s:/$(head -c 4095 /dev/zero | tr '\0' a)"
assert_contains "$ERR_OUT" "longer than 4095 bytes" "InvalidOption message"

step "fuseloopctl refuses too"
expect_failure 'offset|size|invalid|beyond|range' ctl map --offset $((SIZE * 2)) opt-test "$FL_TMP/data.bin"
expect_failure 'size|invalid|beyond|range|zero' ctl map --size 0 opt-test "$FL_TMP/data.bin"
expect_failure 'size|invalid' ctl map --size 12Q opt-test "$FL_TMP/data.bin"
assert_nothing_mapped

step "borderline values that are fine"
OUT=$(flbus map-uri edge "$FL_TMP/data.bin" offset=t:$((SIZE - 512)))
DEV=${OUT#* }
assert_eq 512 "$(device_size "$DEV")" "size of a mapping of the last sector"
assert_eq "$(tail -c 512 "$FL_TMP/data.bin" | sha256sum)" "$(sha256sum <"$DEV")" "last sector"
flbus unmap edge
OUT=$(flbus map-uri edge "$FL_TMP/data.bin" offset=t:4096 size=t:$((SIZE - 4096)) sector-size=u:4096 direct-io=b:true)
DEV=${OUT#* }
assert_eq $((SIZE - 4096)) "$(device_size "$DEV")" "size of $DEV"
assert_eq 4096 "$(blockdev --getss "$DEV")" "logical sector size of $DEV"
assert_eq 4096 "$(get_prop edge SectorSize)" "SectorSize"
assert_eq "$(tail -c $((SIZE - 4096)) "$FL_TMP/data.bin" | sha256sum)" "$(sha256sum <"$DEV")" "content of $DEV"
flbus unmap edge
OUT=$(flbus map-uri edge "$FL_TMP/data.bin" protocol=s:raw partition-scan=b:false)
flbus unmap edge
OUT=$(flbus map-uri edge "$FL_TMP/data.bin" untrusted=b:true "mount-point=s:/$(head -c 4094 /dev/zero | tr '\0' a)")
assert_eq true "$(get_prop edge Untrusted)" "Untrusted"
assert_eq 4095 "$(get_prop edge MountPoint | tr -d '\n' | wc -c)" "length of MountPoint"
flbus unmap edge
assert_nothing_left edge
assert_nothing_mapped
