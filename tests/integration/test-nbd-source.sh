#!/bin/bash
# test-nbd-source: NBD servers (nbdkit) as sources. fuseloopctl maps nbd+unix:// URIs by
# connecting itself and handing the socket over (protocol=nbd, export-name); MapURI (busctl) has
# the daemon connect; the size comes from the server; file and memory exports, a read-only and a
# tiny export, a named export of several, and an ext4 image served over NBD and mounted, all
# checked by content; Source names the server. Bad input: protocol=nbd on a file, export-name
# without nbd or with an URI, a socket nobody listens on, an export the server does not have, a
# server that never answers the handshake (Timeout) — each a named error that leaves nothing.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

command -v nbdkit >/dev/null || skip "nbdkit is not installed"

SIZE=$((24 << 20))
head -c "$SIZE" /dev/urandom >"$FL_TMP/data.img"
DATA_SHA=$(sha256sum <"$FL_TMP/data.img" | cut -d' ' -f1)
mkdir -p "$FL_TMP/exports"
head -c $((3 << 20)) /dev/urandom >"$FL_TMP/exports/second"
cp "$FL_TMP/data.img" "$FL_TMP/exports/first"
make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/ext4.img" 32M "$FL_TMP/tree"

start_nbdkit FILE_PID "$FL_TMP/file.sock" --read-only file "$FL_TMP/data.img"
start_nbdkit MEM_PID "$FL_TMP/mem.sock" memory size=8M
start_nbdkit TINY_PID "$FL_TMP/tiny.sock" --read-only memory size=4096
start_nbdkit DIR_PID "$FL_TMP/dir.sock" --read-only file dir="$FL_TMP/exports"
start_nbdkit EXT4_PID "$FL_TMP/ext4.sock" --read-only file "$FL_TMP/ext4.img"
start_daemon

dev_sha() { dd if="$1" bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1; }

step "fuseloopctl maps nbd+unix:// itself: content, size from the server, Source names it"
DEV=$(ctl_map nbdfile "nbd+unix:///?socket=$FL_TMP/file.sock")
assert_eq "$SIZE" "$(device_size "$DEV")" "size of $DEV (from the server)"
assert_eq "$DATA_SHA" "$(dev_sha "$DEV")" "content of $DEV"
assert_eq "nbd+unix:///?socket=$FL_TMP/file.sock" "$(get_prop nbdfile Source)" "Source of an fd mapping"
assert_eq daemon "$(get_prop nbdfile ReadPath)" "ReadPath of an NBD mapping"
assert_eq "" "$(get_prop nbdfile SourceError)" "SourceError of a healthy mapping"
[ "$(get_prop nbdfile ReadRequests)" -gt 0 ] || fail "no reads counted"
assert_eq 0 "$(get_prop nbdfile ReadErrors)" "ReadErrors"

step "several reads in flight at once (pipelined on the connection)"
drop_caches
readers=()
for i in 0 1 2 3 4 5 6 7; do    # 8 readers of 3 MiB each, at once
        dd if="$DEV" iflag=direct bs=64k skip=$((i * 48)) count=48 status=none | sha256sum | cut -d' ' -f1 \
                >"$FL_TMP/par.$i" &
        readers+=($!)
done
for p in "${readers[@]}"; do
        wait "$p"
done
for i in 0 1 2 3 4 5 6 7; do
        assert_eq "$(dd if="$FL_TMP/data.img" bs=64k skip=$((i * 48)) count=48 status=none | sha256sum | cut -d' ' -f1)" \
                "$(cat "$FL_TMP/par.$i")" "parallel reader $i"
done

step "MapURI: the daemon connects; a memory export, a tiny read-only one"
MDEV=$(busctl_map_uri nbdmem "nbd+unix:///?socket=$FL_TMP/mem.sock")
assert_eq $((8 << 20)) "$(device_size "$MDEV")" "size of the memory export"
assert_eq "$(head -c $((8 << 20)) /dev/zero | sha256sum | cut -d' ' -f1)" "$(dev_sha "$MDEV")" "memory export (zeros)"
TDEV=$(busctl_map_uri nbdtiny "nbd+unix:///?socket=$FL_TMP/tiny.sock")
assert_eq 4096 "$(device_size "$TDEV")" "size of a 4 KiB export"
assert_eq "$(head -c 4096 /dev/zero | sha256sum | cut -d' ' -f1)" "$(dev_sha "$TDEV")" "tiny export"

step "a named export, by URI path (fuseloopctl) and by export-name (fuseloopctl passes it)"
SDEV=$(ctl_map nbdsecond "nbd+unix:///second?socket=$FL_TMP/dir.sock")
assert_eq "$(sha256sum <"$FL_TMP/exports/second" | cut -d' ' -f1)" "$(dev_sha "$SDEV")" "export 'second'"
FDEV=$(busctl_map_uri nbdfirst "nbd+unix:///first?socket=$FL_TMP/dir.sock")
assert_eq "$DATA_SHA" "$(dev_sha "$FDEV")" "export 'first' (MapURI)"
assert_contains "$(ctl status nbdsecond)" "Source: nbd+unix:///second?socket=$FL_TMP/dir.sock" "status shows the export"

step "an ext4 image served over NBD, mapped, mounted and read"
EDEV=$(ctl_map nbdext4 "nbd+unix:///?socket=$FL_TMP/ext4.sock")
mount_ro "$EDEV" "$FL_TMP/mnt" ext4
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
umount_tracked "$FL_TMP/mnt"

step "list and status --json show NBD sources"
assert_match "nbdfile +$DEV +24M +active" "$(ctl list)" "list row"
assert_eq daemon "$(ctl status --json nbdfile | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["read_path"])')" \
        "read_path in JSON"

step "bad input: named errors, nothing left behind"
# protocol=nbd on a regular file
expect_error InvalidSource flbus map-fd badproto "$FL_TMP/data.img" protocol=s:nbd
assert_contains "$ERR_OUT" "socket" "message for protocol=nbd on a file"
# export-name without protocol nbd, and with an URI
expect_error InvalidOption flbus map-fd badexport "$FL_TMP/data.img" export-name=s:x
expect_error InvalidOption flbus map-uri badexport2 "nbd+unix:///?socket=$FL_TMP/file.sock" export-name=s:x
# protocol raw with an NBD URI contradicts it
expect_error InvalidOption flbus map-uri badproto2 "nbd+unix:///?socket=$FL_TMP/file.sock" protocol=s:raw
# nobody listens on the socket
expect_error InvalidSource flbus map-uri nolistener "nbd+unix:///?socket=$FL_TMP/nothing.sock"
# an export the server does not have
expect_error InvalidSource flbus map-uri noexport "nbd+unix:///third?socket=$FL_TMP/dir.sock"
expect_failure "no such|not found|nbd|export" ctl map noexport2 "nbd+unix:///third?socket=$FL_TMP/dir.sock"
# an URI libnbd cannot parse
expect_error InvalidSource flbus map-uri baduri "nbd://[::1"
# fuseloopctl: an URI without a socket, TLS (left to MapURI)
expect_failure "names no socket" ctl map nosock "nbd+unix:///"
expect_failure "TLS" ctl map tls "nbds://localhost/x"
# a server that accepts but never answers the handshake: Timeout (the timeout option bounds it)
"$PYTHON" -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
' "$FL_TMP/silent.sock" 8>&- &
SILENT=$!
FL_PIDS+=("$SILENT")
wait_for 10 "the silent server" test -S "$FL_TMP/silent.sock"
start=$(now_ms)
expect_error Timeout flbus map-uri silent "nbd+unix:///?socket=$FL_TMP/silent.sock" timeout=u:2
log "the silent server was given up after $(($(now_ms) - start)) ms"
for n in badproto badexport badexport2 badproto2 nolistener noexport noexport2 baduri nosock tls silent; do
        assert_nothing_left "$n"
done
alive "$FL_DAEMON_PID" || fail "fuseloopd died"

step "unmap all: nothing left"
for n in nbdfile nbdmem nbdtiny nbdsecond nbdfirst nbdext4; do
        ctl unmap "$n"
        assert_nothing_left "$n"
done
assert_nothing_mapped
