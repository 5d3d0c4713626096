#!/bin/bash
# test-daemon-sandbox: the daemon works with the file system and capabilities that
# systemd/fuseloopd.service gives it (imitated by tests/lib/sandbox-exec.sh): its own mount
# namespace with host mounts propagating in, everything read-only but /dev and the run
# directory, /proc with hidepid=invisible,subset=pid, only the unit's capabilities and no new
# privileges. An ext4 image mapped with fuseloopctl (fd) and one mapped with MapURI from a file
# system the host mounted after the daemon started both serve the right data through loop
# devices that the host mounts, while the FUSE mounts exist only in the daemon's namespace.
# Unmap and SIGTERM leave nothing behind. After a SIGKILL the namespace and its FUSE mounts are
# gone and the kernel names the loop device's backing file "/"; the next daemon still recognises
# the device as a leftover of its run directory (by the file name given to LOOP_CONFIGURE) and
# detaches it.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

for t in unshare setpriv; do
        command -v "$t" >/dev/null || skip "$t is not installed"
done
# The capabilities of the unit's CapabilityBoundingSet=: CAP_DAC_READ_SEARCH (2), CAP_SYS_ADMIN (21).
UNIT_CAPS=$(((1 << 2) | (1 << 21)))

# A crashed daemon's namespace takes its FUSE mounts along, and the kernel then names the backing
# file of its loop devices "/": lib.sh's clean-up cannot tell them apart any more (the daemon's
# start-up clean-up can, which the last step checks). So this test remembers each loop device it got (number and diskseq, which
# identify one attachment) and, if the daemon is gone at the end without having detached them,
# detaches those itself before lib.sh's clean-up runs. (A daemon that lib.sh's clean-up has to
# kill after SIGTERM would leave them behind.)
SANDBOX_LOOPS=()
remember_loop() { # DEVICE
        local n=${1#/dev/}

        SANDBOX_LOOPS+=("$n $(cat "/sys/block/$n/diskseq")")
}
sandbox_exit() {
        local rc=$? entry n seq back

        set +e
        trap - ERR
        if [ -z "$FL_DAEMON_PID" ] || ! alive "$FL_DAEMON_PID"; then
                for entry in "${SANDBOX_LOOPS[@]}"; do
                        read -r n seq <<<"$entry"
                        [ "$(cat "/sys/block/$n/diskseq" 2>/dev/null)" = "$seq" ] || continue
                        back=$(cat "/sys/block/$n/loop/backing_file" 2>/dev/null) || continue
                        if [ "$back" = / ] || [[ $back == "$FL_RUN_DIR/"* ]]; then
                                log "cleanup: detaching /dev/$n (diskseq $seq, backing file '$back') of the gone daemon"
                                losetup -d "/dev/$n"
                        fi
                done
        fi
        # fl_cleanup takes the test's status from $?, and exits.
        (exit "$rc")
        fl_cleanup
}
trap sandbox_exit EXIT

make_tree "$FL_TMP/tree"
mkext4 "$FL_TMP/ext4.img" 16M "$FL_TMP/tree"
SUM=$(sha256_of "$FL_TMP/ext4.img")
# Where the host mounts a file system once the daemon runs. Under systemd every mount is shared,
# and the service's namespace receives what the host mounts later. This machine's / need not be
# shared (and is not ours to change), so the test makes a shared mount of its own for that.
mkdir -p "$FL_TMP/late"
mount -t tmpfs -o size=1m,mode=0700 fuseloop-test-late "$FL_TMP/late" || fail "cannot mount a tmpfs on $FL_TMP/late"
FL_MOUNTS+=("$FL_TMP/late")
mount --make-shared "$FL_TMP/late"
FL_DAEMON_WRAPPER=("$FL_LIB_DIR/sandbox-exec.sh" "$FL_RUN_DIR")
start_daemon
PID=$FL_DAEMON_PID

# daemon_has_mount PATH: something is mounted on PATH in the daemon's namespace.
daemon_has_mount() {
        awk -v p="$1" '$5 == p { f = 1 } END { exit !f }' "/proc/$PID/mountinfo"
}

step "the daemon runs sandboxed"
assert_ne "$(readlink /proc/self/ns/mnt)" "$(readlink "/proc/$PID/ns/mnt")" "mount namespace of the daemon"
ROOT_OPTS=$(awk '$5 == "/" { print $6 }' "/proc/$PID/mountinfo" | tail -n 1)
assert_match '(^|,)ro(,|$)' "$ROOT_OPTS" "options of / in the daemon's namespace"
RUN_OPTS=$(awk -v p="$FL_RUN_DIR" '$5 == p { print $6 }' "/proc/$PID/mountinfo" | tail -n 1)
assert_match '(^|,)rw(,|$)' "$RUN_OPTS" "options of $FL_RUN_DIR in the daemon's namespace"
PROC_SUPER=$(awk '$5 == "/proc" { for (i = 7; $i != "-"; i++); print $(i + 3) }' "/proc/$PID/mountinfo" | tail -n 1)
assert_match 'hidepid=invisible' "$PROC_SUPER" "super options of /proc in the daemon's namespace"
assert_match 'subset=pid' "$PROC_SUPER" "super options of /proc in the daemon's namespace"
BND=$((16#$(awk '/^CapBnd:/ { print $2 }' "/proc/$PID/status")))
assert_eq 0 $((BND & ~UNIT_CAPS)) "capabilities beyond the unit's in the daemon's bounding set ($(printf %x "$BND"))"
assert_ne 0 $((BND & (1 << 21))) "CAP_SYS_ADMIN in the daemon's bounding set"
assert_eq 1 "$(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$PID/status")" "NoNewPrivs of the daemon"

step "map with fuseloopctl: the host uses the loop device, the FUSE mount stays inside"
DEV=$(ctl_map sandbox-fd "$FL_TMP/ext4.img")
remember_loop "$DEV"
# The kernel names the backing file as the daemon sees it; on the host, the same path is the
# (empty) file in the shared run directory, without the FUSE mount on it.
assert_eq "$FL_RUN_DIR/sandbox-fd" "$(backing_file "$DEV")" "backing file of $DEV"
[ -f "$FL_RUN_DIR/sandbox-fd" ] || fail "$FL_RUN_DIR/sandbox-fd does not exist on the host"
assert_eq 0 "$(stat -c %s "$FL_RUN_DIR/sandbox-fd")" "size of $FL_RUN_DIR/sandbox-fd seen from the host"
assert_match "^[0-9]+ [0-9]+ [0-9:]+ / $FL_RUN_DIR/sandbox-fd .* - fuse" \
        "$(awk -v p="$FL_RUN_DIR/sandbox-fd" '$5 == p' "/proc/$PID/mountinfo")" \
        "FUSE mount on the run file in the daemon's namespace"
assert_eq "" "$(mounts_under "$FL_RUN_DIR/")" "mounts under $FL_RUN_DIR/ in the host's namespace"
assert_eq "$SUM" "$(sha256_of "$DEV")" "sha256 of $DEV"
drop_caches
mount_ro "$DEV" "$FL_TMP/mnt" ext4
check_tree "$FL_TMP/mnt" "$FL_TMP/tree"
assert_eq "" "$(mounts_under "$FL_RUN_DIR/")" "mounts under $FL_RUN_DIR/ in the host's namespace while $DEV is mounted"

step "MapURI of a file on a file system the host mounted after the daemon started"
mkdir -p "$FL_TMP/late/store"
mount -t tmpfs -o size=32m,mode=0700 fuseloop-test-store "$FL_TMP/late/store" ||
        fail "cannot mount a tmpfs on $FL_TMP/late/store"
FL_MOUNTS+=("$FL_TMP/late/store")
cp "$FL_TMP/ext4.img" "$FL_TMP/late/store/ext4.img"
# Propagation host -> daemon: the new mount shows up in the daemon's namespace.
wait_for 5 "$FL_TMP/late/store in the daemon's namespace" daemon_has_mount "$FL_TMP/late/store"
DEV2=$(busctl_map_uri sandbox-uri "$FL_TMP/late/store/ext4.img")
remember_loop "$DEV2"
assert_eq "$FL_RUN_DIR/sandbox-uri" "$(backing_file "$DEV2")" "backing file of $DEV2"
assert_eq "$SUM" "$(sha256_of "$DEV2")" "sha256 of $DEV2"
assert_eq "$FL_TMP/late/store/ext4.img" "$(get_prop sandbox-uri Source)" "Source of sandbox-uri"
assert_eq "" "$(mounts_under "$FL_RUN_DIR/")" "mounts under $FL_RUN_DIR/ in the host's namespace"

step "unmap"
umount_tracked "$FL_TMP/mnt"
ctl unmap sandbox-fd
ctl unmap sandbox-uri
assert_nothing_left sandbox-fd
assert_nothing_left sandbox-uri
for d in "$DEV" "$DEV2"; do
        loop_released "$d" || fail "$d still has the backing file '$(backing_file "$d")'"
done
[ -z "$(awk -v p="$FL_RUN_DIR/" 'index($5, p) == 1' "/proc/$PID/mountinfo")" ] ||
        fail "FUSE mounts left in the daemon's namespace: $(awk -v p="$FL_RUN_DIR/" 'index($5, p) == 1 { print $5 }' "/proc/$PID/mountinfo")"
# The source is closed: the host can unmount the file system it came from.
umount_tracked "$FL_TMP/late/store"
umount_tracked "$FL_TMP/late"

step "SIGTERM"
stop_daemon TERM
assert_eq 0 "$FL_DAEMON_STATUS" "exit status of fuseloopd"
assert_nothing_mapped

step "SIGKILL: the next daemon detaches what the dead one left"
start_daemon
DEV3=$(ctl_map sandbox-crash "$FL_TMP/ext4.img")
remember_loop "$DEV3"
stop_daemon KILL
# The namespace died with the daemon, and the FUSE mount with it.
wait_for 5 "the backing file of $DEV3 to be named '/'" eval '[ "$(backing_file "$DEV3")" = / ]'
FL_DAEMON_WRAPPER=()
start_daemon
wait_for 10 "$DEV3 to be detached by the new daemon" loop_released "$DEV3"
grep -q "Detached leftover $DEV3 " "$FL_DAEMON_LOG" || fail "the new daemon did not log detaching $DEV3"
stop_daemon TERM
assert_nothing_mapped
