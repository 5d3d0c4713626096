#!/bin/bash
# Demo of fuseloop, run as root on a Debian 12 machine: installs what is
# missing, builds and installs, starts the system bus, polkitd and udevd where
# they do not run yet, starts build/fuseloopd, maps a generated disk image (GPT,
# one ext4 partition) with build/fuseloopctl, mounts the partition read-only,
# shows it, and cleans up everything it made, also when a step fails: the mount,
# the mapping and its loop device, the daemon, the services it started (those
# that already ran stay untouched), its temporary directory and the daemon's
# run directory /run/fuseloopd if it did not exist before. It takes the lock of
# the integration tests, so that it never runs beside them on the same bus name.
#
# Usage: tests/demo.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=$ROOT/build
SERVICES=$ROOT/tests/lib/services.sh
BUS_NAME=org.proxmox.FuseLoop1
MAPPING_PATH=/org/proxmox/FuseLoop1/mapping/demo   # sd_bus_path_encode("demo")
NAME=demo
RUN_DIR=/run/fuseloopd                              # the daemon's default run directory
TEST_LOCK=/run/fuseloop-test.lock                   # taken by tests/lib/lib.sh as well
# Everything here talks to the standard system bus, whatever the caller exported.
export DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket

PKGS=(meson ninja-build pkg-config gcc libc6-dev libfuse3-dev fuse3 libsystemd-dev libudev-dev
      liburing-dev libblkid-dev libjson-c-dev scdoc udev systemd dbus polkitd util-linux fdisk e2fsprogs)

step_no=0
step() { step_no=$(( step_no + 1 )); printf '\n==> %d. %s\n' "$step_no" "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }
note() { printf 'demo: %s\n' "$*" >&2; }
die() { note "error: $*"; exit 1; }

# Start time of a process (field 22 of /proc/PID/stat); with the pid it names
# one process even after the pid is reused.
starttime() {
    local stat f
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    read -r -a f <<<"${stat##*) }"
    printf '%s\n' "${f[19]}"
}

has_owner() {
    busctl --system --timeout=2 call org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus NameHasOwner s "$BUS_NAME" 2>/dev/null | grep -q 'b true'
}

owner_pid() {
    busctl --system --timeout=2 call org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus GetConnectionUnixProcessID s "$BUS_NAME" 2>/dev/null |
        awk '{print $2}'
}

# ---------------------------------------------------------------- cleanup --

tmp=""
mnt=""
daemon_pid=""
daemon_start=""
daemon_log=""
daemon_status=""
run_dir_made=0
services_started=0
map_tried=0
mounted=0

# True while the daemon we started runs (not a zombie, not a reused pid).
daemon_alive() {
    [ -n "$daemon_pid" ] && [ "$(starttime "$daemon_pid")" = "$daemon_start" ] &&
        [ "$(cut -d' ' -f3 "/proc/$daemon_pid/stat" 2>/dev/null)" != Z ]
}

# Stops the daemon we started (if it still runs) and collects its exit status
# in $daemon_status.
stop_daemon() {
    local deadline st=0
    [ -n "$daemon_pid" ] || return 0
    if daemon_alive; then
        # SIGTERM: the daemon unmaps what is left and exits.
        run kill -TERM "$daemon_pid" || true
        deadline=$(( SECONDS + 60 ))
        while daemon_alive && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        if daemon_alive; then
            note "fuseloopd (pid $daemon_pid) still runs 60 s after SIGTERM, sending SIGKILL;" \
                 "check 'losetup -l' and 'findmnt $RUN_DIR' for leftovers"
            kill -KILL "$daemon_pid" 2>/dev/null || true
        fi
    fi
    # It is our child: wait reaps it and tells how it ended.
    wait "$daemon_pid" 2>/dev/null || st=$?
    daemon_status=$st
    daemon_pid=""
    echo "fuseloopd exited with status $daemon_status"
}

cleanup() {
    local rc=$?
    set +e
    trap '' INT TERM
    step "Clean up"
    if [ "$mounted" = 1 ]; then
        run umount "$mnt" || note "umount $mnt failed"
        mountpoint -q "$mnt" || mounted=0
    fi
    if [ "$map_tried" = 1 ] && daemon_alive; then
        run "$BUILD/fuseloopctl" unmap "$NAME" || note "unmap $NAME failed"
    fi
    stop_daemon
    if [ -n "$daemon_status" ] && [ "$daemon_status" != 0 ]; then
        note "fuseloopd did not exit cleanly (status $daemon_status)"
        [ "$rc" != 0 ] || rc=1
    fi
    if [ "$run_dir_made" = 1 ] && [ -d "$RUN_DIR" ]; then
        # The daemon made it; leave the machine as we found it (rmdir: only if empty).
        run rmdir "$RUN_DIR" || note "$RUN_DIR is not empty; left in place"
    fi
    if [ -n "$daemon_log" ] && [ -s "$daemon_log" ]; then
        if [ "$rc" = 0 ]; then printf -- '--- fuseloopd log\n'
        else printf -- '--- fuseloopd log (last 50 lines)\n'; fi
        tail -n 50 "$daemon_log"
    fi
    if [ "$services_started" = 1 ]; then
        [ "$rc" = 0 ] || "$SERVICES" logs
        # Stops only what our own "start" started (records in our state dir).
        run "$SERVICES" stop 8>&-
    fi
    if [ -n "$tmp" ]; then
        if [ "$mounted" = 1 ]; then
            note "$mnt is still mounted; leaving $tmp in place"
        else
            rm -rf --one-file-system "$tmp"
        fi
    fi
    if [ "$rc" = 0 ]; then printf '\nDemo finished.\n'
    else printf '\nDemo FAILED (exit %d), see the messages above.\n' "$rc"; fi
    exit "$rc"
}

# ------------------------------------------------------------------- main --

[ "$(id -u)" = 0 ] || die "run as root: it installs packages, starts services and maps devices"
[ -r /etc/debian_version ] || note "not a Debian system; package installation may fail"

trap cleanup EXIT
trap 'note "failed: $BASH_COMMAND (line $LINENO)"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# fd 8 holds the test lock until the end; nothing started below keeps it (8>&-).
exec 8>"$TEST_LOCK"
if ! flock -n 8; then
    note "the integration tests hold $TEST_LOCK; waiting for them (20 minutes at most)"
    flock -w 1200 8 || die "could not take $TEST_LOCK"
fi

step "Install build and runtime packages"
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    # apt-get update does not wait for a lock held by another apt run (for
    # example apt-daily on a fresh machine): try again a few times.
    for i in 1 2 3 4 5 6; do
        run apt-get update -q && break
        [ "$i" -lt 6 ] || die "apt-get update failed"
        sleep 10
    done
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=300 "${missing[@]}"
else
    echo "all present: ${PKGS[*]}"
fi

step "Build and install (meson, prefix /usr, so that the bus policy is where dbus-daemon reads it)"
if [ ! -f "$BUILD/meson-private/coredata.dat" ]; then
    run meson setup "$BUILD" --prefix=/usr
else
    prefix=$(meson introspect "$BUILD" --buildoptions |
             python3 -c 'import json, sys
print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"))')
    [ "$prefix" = /usr ] || run meson configure "$BUILD" -Dprefix=/usr
fi
run meson compile -C "$BUILD"
run meson install -C "$BUILD" --quiet
for exe in fuseloopd fuseloopctl; do
    [ -x "$BUILD/$exe" ] || die "$BUILD/$exe was not built"
done

step "Start the system bus, polkitd and udevd (those not running yet)"
[ -x "$SERVICES" ] || die "$SERVICES is missing"
# Kernel modules behind /dev/fuse and /dev/loop-control.
[ -c /dev/fuse ] || run modprobe fuse
[ -c /dev/loop-control ] || run modprobe loop
tmp=$(mktemp -d /tmp/fuseloop-demo.XXXXXX)
# A state directory of our own: "stop" then stops only what this run started.
export FUSELOOP_SERVICES_STATE=$tmp/services
services_started=1
run "$SERVICES" start 8>&-
# dbus-daemon must read the bus policy that "meson install" just installed.
run "$SERVICES" reload 8>&-

step "Start fuseloopd from the build tree"
if has_owner; then
    die "$BUS_NAME already has an owner (pid $(owner_pid)); stop that daemon first"
fi
daemon_log=$tmp/fuseloopd.log
[ -e "$RUN_DIR" ] || run_dir_made=1
# --idle-timeout 0: the demo stops the daemon itself at the end.
# setsid: Ctrl-C reaches this script only, whose cleanup unmaps before it stops
# the daemon. In a non-interactive script setsid does not fork, so $! is the
# daemon.
setsid "$BUILD/fuseloopd" --log-level info --idle-timeout 0 </dev/null >"$daemon_log" 2>&1 8>&- &
daemon_pid=$!
daemon_start=$(starttime "$daemon_pid") || die "fuseloopd exited at once"
printf '+ %s/fuseloopd --log-level info --idle-timeout 0  (pid %s, log %s)\n' "$BUILD" "$daemon_pid" "$daemon_log"
deadline=$(( SECONDS + 30 ))
until has_owner; do
    daemon_alive || die "fuseloopd exited before it owned $BUS_NAME"
    [ "$SECONDS" -lt "$deadline" ] || die "fuseloopd did not own $BUS_NAME within 30 s"
    sleep 0.1
done
owner=$(owner_pid)
[ "$owner" = "$daemon_pid" ] || die "$BUS_NAME is owned by pid $owner, not by our fuseloopd ($daemon_pid)"
echo "$BUS_NAME is owned by pid $owner"

step "Generate a demo image: GPT, one ext4 partition with a few files"
img=$tmp/demo.img
content=$tmp/content
mkdir -p "$content/notes"
printf 'Hello from a disk image mapped by fuseloopd.\n' >"$content/hello.txt"
printf 'This file system was made with mke2fs -d straight into the partition,\nwithout a loop device.\n' \
    >"$content/README"
seq -f 'line %g' 1 20 >"$content/notes/numbers.txt"
run truncate -s 64M "$img"
printf 'label: gpt\nstart=2048, type=L, name="demo-data"\n' | run sfdisk -q "$img"
read -r part_start part_sectors < <(partx -g -o START,SECTORS -n 1 "$img")
# -E offset: write the file system at the partition's place inside the image.
run mke2fs -q -F -t ext4 -L demo-data -d "$content" -E offset=$(( part_start * 512 )) \
    "$img" "$(( part_sectors / 2 ))k"
run sfdisk -l "$img"

step "Map the image and mount its partition read-only (fuseloopctl map --mount)"
mnt=$tmp/mnt
mkdir -p "$mnt"
map_tried=1
run "$BUILD/fuseloopctl" map --mount "$mnt" "$NAME" "$img" | tee "$tmp/map.out"
mountpoint -q "$mnt" && mounted=1
dev=$(grep -Eo '^/dev/loop[0-9]+$' "$tmp/map.out" | tail -n 1 || true)
if [ -z "$dev" ]; then
    dev=$(busctl --system get-property "$BUS_NAME" "$MAPPING_PATH" \
          org.proxmox.FuseLoop1.Mapping Device | sed -n 's/^s "\(.*\)"$/\1/p')
fi
[ -b "$dev" ] || die "no loop device for mapping $NAME (got '$dev')"
part=${dev}p1
[ -b "$part" ] || { lsblk "$dev" || true; die "$part is missing although Map returned"; }
[ "$mounted" = 1 ] || die "$mnt is not mounted although map --mount succeeded"
echo "device: $dev, partition: $part, mounted at $mnt"
# The udev rules give stable names; they exist once map returned.
run ls -l "/dev/fuseloop/$NAME" "/dev/fuseloop/$NAME-part1"

step "List the mappings and show this one"
run "$BUILD/fuseloopctl" list
run "$BUILD/fuseloopctl" list --json=pretty
run losetup -l "$dev"

step "Look inside"
run ls -l "$mnt" "$mnt/notes"
run cat "$mnt/hello.txt"
run findmnt "$mnt"
run lsblk -o NAME,SIZE,RO,TYPE,FSTYPE,LABEL,MOUNTPOINTS "$dev"

step "Status after reading (counters)"
run "$BUILD/fuseloopctl" status "$NAME"

step "Unmap: fuseloopctl unmounts $mnt first, then the daemon detaches $dev"
run "$BUILD/fuseloopctl" unmap "$NAME"
mountpoint -q "$mnt" && die "$mnt is still mounted after unmap"
mounted=0
map_tried=0
[ ! -e "/dev/fuseloop/$NAME" ] || die "/dev/fuseloop/$NAME is still there after unmap"
run "$BUILD/fuseloopctl" list
