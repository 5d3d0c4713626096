#!/bin/bash
# bench/run.sh - read performance of fuseloopd's loop devices, side by side with the kernel bound
# and with other ways to put a FUSE file under a loop device, all in one run on the same image:
# a file of random data (1 GiB by default) in a tmpfs that the script mounts itself.
#
# Subjects (each one a read-only /dev/loopN that the script attaches and detaches):
#   kernel    losetup -r directly on the image: the kernel bound that every ratio refers to
#   fl-file   fuseloopd, file source, default settings:   fuseloopctl map NAME IMAGE
#   fl-copy   fuseloopd, file source, FUSE passthrough off: the daemon serves every read
#             (fuseloopctl map --passthrough=off, or else --option passthrough=false); the loop
#             device reads its FUSE file with direct I/O, the default on this path
#   fl-copy-buf  the same with a buffered loop device (--direct-io=off): what direct I/O brings
#   nbdfuse   nbdkit (file plugin, unix socket) + nbdfuse (FUSE file MNT/nbd) + losetup -r on it
#   qsd       qemu-storage-daemon, file blockdev with a FUSE export (a file) + losetup -r on it
#   fl-nbd    fuseloopd, NBD source from the same kind of nbdkit: fuseloopctl map NAME nbd+unix://
# A subject that this build does not support (fuseloopctl or the daemon refuses the map) is
# shown as "n/a (not supported by this build)"; the run goes on with the others.
#
# Jobs, each on the loop device, each after dropping the page cache:
#   seq     fio, sequential 1 MiB O_DIRECT reads, iodepth 16, libaio, the whole device once:
#           MiB/s, the median of SEQ_PASSES such passes (a time-based job would read the
#           device again and again, and after the first pass a FUSE file's page cache, not
#           the server, would answer the loop device)
#   rand    fio, random 4 KiB O_DIRECT reads, iodepth 32, time-based: IOPS
#   lat     fio, random 4 KiB O_DIRECT reads, iodepth 1, time-based: p50 and p99 completion
#           latency in µs (fio's random map reads no block twice within one job)
#   cache   dd (buffered) of the whole device once, with the device held open: growth of
#           "Buffers:" + "Cached:" in /proc/meminfo, divided by the device size (1.0: the data
#           is cached once, by the loop device; 2.0: twice, also as the FUSE file's pages)
# and for fuseloopd alone:
#   map latency   from the MapURI call until a first O_DIRECT read of the new device returned,
#                 in one process (bench/map-latency.py), and from the start of "fuseloopctl
#                 map" until dd read the device (two process starts included): the median of
#                 CYCLES map/unmap cycles each, once as the only mapping and once beside
#                 MAPPINGS-1 others
#   RSS           the daemon's VmRSS with 1, 100 and MAPPINGS mappings (1 MiB sparse files) and
#                 what each mapping beyond the first adds
#
# Usage, as root, from anywhere:
#   bash bench/run.sh [--quick] [--runtime SECS] [--size MIB] [--mappings N] [--cycles N]
#                     [--markdown FILE] [--build-dir DIR] [--no-install] [--subjects LIST]
#                     [--no-scale]
#   --quick          3 s per time-based fio job and no ramp time (default: 10 s after a 1 s ramp)
#   --subjects LIST  only these subjects (comma-separated keys, see above); the kernel bound is
#                    always measured, as every ratio refers to it
#   --no-scale       skip the map latency and RSS part
#   --markdown FILE  also write the results as markdown to FILE; if FILE has the lines
#                    "<!-- bench-results:begin -->" and "<!-- bench-results:end -->" (each a
#                    line of its own), only the text between them is replaced
#                    (docs/benchmarks.md has them)
#   --build-dir DIR  the meson build directory (default: build-bench in the source tree): set up
#                    as a release build if it does not exist (an existing one must be a release
#                    build), then compiled and installed
#   --no-install     never call apt-get: fail if a package is missing
# Environment: FUSELOOPD_LOG_LEVEL, the log level of the fuseloopd it starts (default info);
# the tail of its log is shown when a fuseloopd part fails.
#
# What it does: installs the packages it needs with apt-get (only those missing), takes the
# test lock /run/fuseloop-test.lock for the whole run (it waits while the test suite runs),
# builds and installs the project ("meson install": the daemon, fuseloopctl, the bus, polkit
# and udev files), starts the system bus, polkitd and udevd with tests/lib/services.sh if they
# are not running (and stops again only what it started), starts its own fuseloopd (run
# directory /run/fuseloopd-bench, no idle exit) unless one already owns the bus name, then
# measures. Everything it made (mappings, loop devices, mounts, processes, files) it removes on
# exit, also after a failure or Ctrl-C; it touches no loop device, mount or process of others.
# Dropping the page cache affects the whole machine; run it on a machine that is otherwise quiet.
set -euo pipefail
shopt -s inherit_errexit

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVICES_SH=$SRC/tests/lib/services.sh
# shellcheck source=../tests/lib/proc.sh
. "$SRC/tests/lib/proc.sh"
LOCK_FILE=/run/fuseloop-test.lock
RUN_DIR=/run/fuseloopd-bench
BUS=org.proxmox.FuseLoop1
export LC_ALL=C DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket

# Settings (see the usage above).
RUNTIME=10          # seconds per fio job
RAMP=1              # fio ramp time in seconds, not counted
SIZE_MIB=1024       # size of the benchmark image
MAPPINGS=500        # mappings for the RSS and the map latency under load
CYCLES=20           # map/unmap cycles per map latency figure
SEQ_PASSES=3        # whole-device passes of the sequential job
MARKDOWN=
BUILD=$SRC/build-bench
NO_INSTALL=0
ONLY_SUBJECTS=       # --subjects: a comma-separated list
NO_SCALE=            # --no-scale: 1
PYTHON=/usr/bin/python3   # Debian's, which has python3-dbus (not another one first in PATH)
LOG_LEVEL=${FUSELOOPD_LOG_LEVEL:-info}   # of the fuseloopd this script starts
CTL_TIMEOUT=90      # seconds any fuseloopctl call may take (the daemon gives udev 60 s)

PKGS=(meson ninja-build pkg-config gcc libc6-dev libfuse3-dev fuse3 libsystemd-dev libudev-dev
      liburing-dev libblkid-dev libjson-c-dev udev systemd dbus polkitd util-linux mount
      fio nbdkit libnbd-bin qemu-system-common qemu-utils python3 python3-dbus)

# Subjects in table order, with their labels.
SUBJECTS=(kernel fl-file fl-copy fl-copy-buf nbdfuse qsd fl-nbd)
declare -A LABEL=(
        [kernel]="kernel loop on the image (bound)"
        [fl-file]="fuseloopd, file (default)"
        [fl-copy]="fuseloopd, file, passthrough off"
        [fl-copy-buf]="fuseloopd, file, passthrough off, buffered loop"
        [nbdfuse]="nbdkit file + nbdfuse"
        [qsd]="qemu-storage-daemon FUSE export"
        [fl-nbd]="fuseloopd, nbd+unix source (nbdkit)"
)

say() { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
warn() { printf 'bench: warning: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '/^# Usage/,/^# What it does/{/^# What it does/d; s/^# \{0,1\}//; p}' "$0"; }

while [ $# -gt 0 ]; do
        case $1 in
        --quick) RUNTIME=3; RAMP=0 ;;
        --runtime) RUNTIME=${2:?}; shift ;;
        --size) SIZE_MIB=${2:?}; shift ;;
        --mappings) MAPPINGS=${2:?}; shift ;;
        --cycles) CYCLES=${2:?}; shift ;;
        --markdown) MARKDOWN=${2:?}; shift ;;
        --build-dir) BUILD=${2:?}; shift ;;
        --no-install) NO_INSTALL=1 ;;
        --subjects) ONLY_SUBJECTS=${2:?}; shift ;;
        --no-scale) NO_SCALE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
        esac
        shift
done
if [ -n "${ONLY_SUBJECTS:-}" ]; then
        chosen=(kernel)
        IFS=, read -r -a wanted <<<"$ONLY_SUBJECTS"
        for s in "${wanted[@]}"; do
                [ -n "${LABEL[$s]:-}" ] || die "unknown subject '$s' (known: ${SUBJECTS[*]})"
                [ "$s" = kernel ] || chosen+=("$s")
        done
        SUBJECTS=("${chosen[@]}")
fi
for v in RUNTIME SIZE_MIB MAPPINGS CYCLES; do
        [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "${v,,} must be a positive number, not '${!v}'"
done
[ "$MAPPINGS" -ge 2 ] || die "--mappings must be at least 2"
[ "$(id -u)" = 0 ] || die "run as root"
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
case $MARKDOWN in ''|/*) ;; *) MARKDOWN=$PWD/$MARKDOWN ;; esac
IMAGE_SIZE=$((SIZE_MIB << 20))
T_START=$SECONDS

# State that the cleanup looks at; empty until the thing exists.
WORK=                   # the tmpfs mounted by this script (image, sockets, mount points, logs)
REG=                    # registry of resources to release, one per line (see release_resources)
SERVICES_STATE=         # services.sh state directory of this run (what it started, it stops)
DAEMON_PID=             # fuseloopd started by this script
DAEMON_START=
PREFIX=bench$$-         # prefix of every mapping name of this run
DAEMON=                 # the installed fuseloopd and fuseloopctl
CTL=
FL_PID=                 # the fuseloopd that is measured

# --------------------------------------------------------------- helpers --

# Start time of a process in clock ticks since boot; with the pid it names one process.
# stop_pid PID STARTTIME: SIGTERM, after 10 s SIGKILL; only if PID is still that very process.
stop_pid() {
        local pid=$1 st=$2
        [ "$(starttime "$pid" 2>/dev/null)" = "$st" ] || return 0
        kill -TERM "$pid" 2>/dev/null || return 0
        wait_until 10 eval "! alive $pid" && return 0
        warn "pid $pid ignored SIGTERM for 10 s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_until 5 eval "! alive $pid" || true
}

now_us() { echo "${EPOCHREALTIME/[.,]/}"; }

meminfo_kib() { awk -v k="$1:" '$1 == k { print $2 }' /proc/meminfo; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# Median of the numbers given as arguments.
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# record KEY METRIC VALUE: one result line for the report.
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$WORK/results"; }

# ------------------------------------------------- registry and cleanup --

# reg KIND ARGS...: notes a resource before (or right after) it is made, so that the cleanup
# releases it even if the script is interrupted halfway. Kinds:
#   loopfile FILE   every loop device whose backing file is FILE (all files are in $WORK);
#                   noted before losetup, for the moment until the device is known
#   loop DEV SEQ    loop device DEV, if it still has the disk sequence number SEQ, that is, if
#                   it is still the very device that this script attached
#   mount PATH      a mount on PATH
#   pid PID START   a process this script started
reg() { printf '%s\n' "$*" >>"$REG"; }

# Detaches the loop devices backed by FILE. The backing file is read from sysfs, so this works
# even when a FUSE server behind FILE is gone already.
detach_loops_of() {
        local f n
        for f in /sys/block/loop*/loop/backing_file; do
                [ -r "$f" ] || continue
                [ "$(cat "$f" 2>/dev/null)" = "$1" ] || continue
                n=${f#/sys/block/}
                n=${n%%/*}
                losetup -d "/dev/$n" || warn "losetup -d /dev/$n failed"
        done
}

# Detaches loop device DEV if its disk sequence number is still SEQ. (Once the FUSE server behind
# a backing file is gone, the kernel no longer shows the file's path; the number stays.)
detach_loop() {
        local n=${1#/dev/}
        [ "$(cat "/sys/block/$n/diskseq" 2>/dev/null)" = "$2" ] || return 0
        [ -e "/sys/block/$n/loop/backing_file" ] || return 0
        losetup -d "$1" || warn "losetup -d $1 failed"
}

is_mounted() { findmnt -rn --mountpoint "$1" >/dev/null 2>&1; }

# Removes every mapping of this run that the daemon still has. Only asks the bus name's owner
# (never auto-starting a daemon) and only for names with this run's prefix.
unmap_ours() {
        local name
        { [ -n "$CTL" ] && has_owner "$BUS"; } || return 0
        for name in $(fuseloopctl list --no-legend 2>/dev/null | awk -v p="$PREFIX" 'index($1, p) == 1 { print $1 }'); do
                fuseloopctl unmap "$name" >/dev/null 2>&1 ||
                        fuseloopctl unmap --lazy "$name" >/dev/null 2>&1 || warn "could not unmap $name"
        done
}

# Releases everything in the registry, newest first, and empties it.
release_resources() {
        local kind a b
        unmap_ours
        [ -n "$REG" ] && [ -s "$REG" ] || return 0
        while read -r kind a b; do
                case $kind in
                loopfile) detach_loops_of "$a" ;;
                loop) detach_loop "$a" "$b" ;;
                mount) if is_mounted "$a"; then umount "$a" 2>/dev/null || umount -l "$a" || warn "umount $a failed"; fi ;;
                pid) stop_pid "$a" "$b" ;;
                esac
        done < <(tac "$REG")
        : >"$REG"
}

cleanup() {
        local rc=$?
        set +e
        trap - EXIT INT TERM HUP
        [ -n "$WORK" ] && release_resources
        if [ -n "$DAEMON_PID" ]; then
                stop_pid "$DAEMON_PID" "$DAEMON_START"
                rmdir "$RUN_DIR" 2>/dev/null
        fi
        if [ -n "$SERVICES_STATE" ]; then
                FUSELOOP_SERVICES_STATE=$SERVICES_STATE FUSELOOP_SERVICES_NO_INSTALL=1 \
                        bash "$SERVICES_SH" stop >/dev/null 2>&1
                rm -rf "$SERVICES_STATE"
        fi
        if [ -n "$WORK" ]; then
                if is_mounted "$WORK"; then umount "$WORK" 2>/dev/null || umount -l "$WORK"; fi
                rmdir "$WORK" 2>/dev/null
        fi
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# spawn LOG COMMAND...: starts COMMAND in a session of its own (so that Ctrl-C reaches it only
# through the cleanup, in the right order), output to LOG, and registers it. Sets SPAWNED.
# A background job of a shell without job control is no process group leader, so setsid
# execs COMMAND in place and $! is COMMAND's pid.
spawn() {
        local log=$1
        shift
        setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
        SPAWNED=$!
        reg pid "$SPAWNED" "$(starttime "$SPAWNED")"
}

# -------------------------------------------------------------- packages --

install_pkgs() {
        local p missing=() i
        for p in "${PKGS[@]}"; do
                dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
        done
        [ ${#missing[@]} -gt 0 ] || return 0
        [ "$NO_INSTALL" = 0 ] || die "missing packages: ${missing[*]}"
        say "installing ${missing[*]}"
        # apt-get update does not wait for the lists lock: retry while another apt run holds it.
        for i in 1 2 3 4 5 6; do
                apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null && break
                [ "$i" -lt 6 ] || die "apt-get update failed"
                sleep 10
        done
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null || die "apt-get install failed"
}

# --------------------------------------------------------- build, install --

build_and_install() {
        local type
        if [ -f "$BUILD/build.ninja" ]; then
                type=$(meson introspect "$BUILD" --buildoptions |
                       python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "buildtype"))')
                [ "$type" = release ] || die "$BUILD is a $type build, not a release build; name another --build-dir"
        else
                say "meson setup $BUILD (release)"
                # No manual pages (no scdoc needed); warnings of a newer compiler do not stop a benchmark.
                meson setup "$BUILD" "$SRC" --prefix=/usr -Dbuildtype=release -Dwerror=false \
                        -Dman=disabled >"$BUILD.setup.log" 2>&1 ||
                        { tail -n 30 "$BUILD.setup.log" >&2; rm -f "$BUILD.setup.log"; die "meson setup failed"; }
                rm -f "$BUILD.setup.log"
        fi
        say "building and installing $BUILD"
        meson compile -C "$BUILD" >"$BUILD/bench-compile.log" 2>&1 ||
                { tail -n 30 "$BUILD/bench-compile.log" >&2; die "the build failed"; }
        meson install -C "$BUILD" --quiet --no-rebuild
        # Where the installed daemon and client are.
        read -r DAEMON CTL < <(meson introspect "$BUILD" --installed | python3 -c '
import json, os, sys
inst = json.load(sys.stdin)
print(inst[os.path.join(sys.argv[1], "fuseloopd")], inst[os.path.join(sys.argv[1], "fuseloopctl")])' "$BUILD")
        { [ -x "$DAEMON" ] && [ -x "$CTL" ]; } || die "fuseloopd or fuseloopctl not installed"
        note "daemon $DAEMON, client $CTL ($("$CTL" --version 2>/dev/null | head -n 1))"
}

# The installed client; no call of it may hang the run.
fuseloopctl() { timeout "$CTL_TIMEOUT" "$CTL" --no-ask-password "$@"; }

# Shows the tail of the log of the fuseloopd this script started.
daemon_log() {
        [ -n "$DAEMON_PID" ] && [ -s "$WORK/fuseloopd.log" ] || return 0
        echo "   --- tail of the fuseloopd log:" >&2
        tail -n 20 "$WORK/fuseloopd.log" | sed 's/^/   /' >&2
}

# ------------------------------------------------------------ the daemon --

# Starts fuseloopd with a run directory of its own and no idle exit, with the file limit its
# unit gives it (LimitNOFILE=65536). A daemon that owns the name already (another user's, or
# one started by bus activation) usually exits after 30 idle seconds: wait for that; if it
# stays, measure it instead (and say so).
start_daemon() {
        local pid
        if has_owner "$BUS"; then
                pid=$(owner_pid "$BUS")
                note "fuseloopd pid $pid ($(readlink "/proc/$pid/exe" 2>/dev/null)) owns $BUS; waiting up to 60 s for it to exit"
                if ! wait_until 60 eval "! has_owner $BUS"; then
                        pid=$(owner_pid "$BUS")
                        warn "using the running fuseloopd, pid $pid ($(readlink "/proc/$pid/exe" 2>/dev/null)): the fuseloopd figures describe that binary"
                        FL_PID=$pid
                        return 0
                fi
        fi
        (
                ulimit -n 65536 2>/dev/null || true
                exec setsid "$DAEMON" --run-dir "$RUN_DIR" --idle-timeout 0 --log-level "$LOG_LEVEL"
        ) </dev/null >"$WORK/fuseloopd.log" 2>&1 9>&- &
        DAEMON_PID=$!
        DAEMON_START=$(starttime "$DAEMON_PID")
        if ! wait_until 10 has_owner "$BUS" || [ "$(owner_pid "$BUS")" != "$DAEMON_PID" ]; then
                cat "$WORK/fuseloopd.log" >&2
                die "fuseloopd did not take $BUS"
        fi
        FL_PID=$DAEMON_PID
        note "started fuseloopd pid $FL_PID (run directory $RUN_DIR)"
}

daemon_alive() { alive "$FL_PID" && has_owner "$BUS" && [ "$(owner_pid "$BUS")" = "$FL_PID" ]; }

# -------------------------------------------------------------- the jobs --

# Drops the page cache of the machine and the buffers of DEV.
drop_caches() {
        sync
        blockdev --flushbufs "$1"
        echo 3 >/proc/sys/vm/drop_caches
}

# fio_job KEY JOB DEV FIO-ARGS...: one read-only O_DIRECT job on DEV, JSON in $WORK/KEY-JOB.json.
# Without --time_based among FIO-ARGS it reads the whole device once.
fio_job() {
        local key=$1 job=$2 dev=$3
        shift 3
        drop_caches "$dev"
        fio --name="$job" --filename="$dev" --readonly --direct=1 --ioengine=libaio \
                --output-format=json --output="$WORK/$key-$job.json" "$@" >/dev/null
}

# fio_get FILE WHAT: prints bw (MiB/s), iops, p50 or p99 (completion latency, µs) of a job.
fio_get() {
        python3 - "$@" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
read = json.loads(text[text.index("{"):])["jobs"][0]["read"]
what = sys.argv[2]
if what == "bw":
    print("%.1f" % (read["bw_bytes"] / 1048576))
elif what == "iops":
    print("%.0f" % read["iops"])
else:
    pct = read["clat_ns"]["percentile"]["%.6f" % float(what[1:])]
    print("%.1f" % (pct / 1000))
EOF
}

# measure KEY DEV: runs every job on DEV and records the results of subject KEY.
measure() {
        local key=$1 dev=$2 size before after t0 t1 v p50 p99 hold i passes=()
        local timed=(--time_based --runtime="$RUNTIME" --ramp_time="$RAMP")
        size=$(blockdev --getsize64 "$dev")
        [ "$size" = "$IMAGE_SIZE" ] || die "$dev has $size bytes, not $IMAGE_SIZE"

        for i in $(seq "$SEQ_PASSES"); do
                fio_job "$key" seq "$dev" --rw=read --bs=1M --iodepth=16
                passes+=("$(fio_get "$WORK/$key-seq.json" bw)")
        done
        v=$(median "${passes[@]}")
        record "$key" seq "$v"
        note "seq 1M qd16:     $v MiB/s (median of ${passes[*]})"

        fio_job "$key" rand "$dev" --rw=randread --bs=4k --iodepth=32 "${timed[@]}"
        v=$(fio_get "$WORK/$key-rand.json" iops)
        record "$key" iops "$v"
        note "rand 4k qd32:    $v IOPS"

        fio_job "$key" lat "$dev" --rw=randread --bs=4k --iodepth=1 "${timed[@]}"
        p50=$(fio_get "$WORK/$key-lat.json" p50)
        p99=$(fio_get "$WORK/$key-lat.json" p99)
        record "$key" p50 "$p50"
        record "$key" p99 "$p99"
        note "rand 4k qd1:     p50 $p50 µs, p99 $p99 µs"

        # The block device's own cache counts as "Buffers:", a FUSE file's as "Cached:". The kernel
        # drops a block device's cache at its last close: hold it open until both are read.
        drop_caches "$dev"
        exec {hold}<"$dev"
        before=$(($(meminfo_kib Buffers) + $(meminfo_kib Cached)))
        t0=$(now_us)
        dd if="$dev" of=/dev/null bs=1M status=none
        t1=$(now_us)
        after=$(($(meminfo_kib Buffers) + $(meminfo_kib Cached)))
        exec {hold}<&-
        v=$(awk -v a="$after" -v b="$before" -v s="$size" 'BEGIN { printf "%.2f", (a - b) * 1024 / s }')
        record "$key" cache "$v"
        note "buffered dd:     page cache +${v}× the device size ($(awk -v s="$size" -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", s / 1048576 / (t / 1e6) }') MiB/s)"
}

# Attaches a read-only loop device to FILE (registered first), waits for udev, prints it.
attach_loop() {
        local dev
        reg loopfile "$1"
        dev=$(losetup -r --show -f "$1")
        reg loop "$dev" "$(cat "/sys/block/${dev#/dev/}/diskseq")"
        udevadm settle --timeout=30 || true
        echo "$dev"
}

# Starts nbdkit's file plugin on the image, read-only, on the unix socket $WORK/nbd.sock.
start_nbdkit() {
        rm -f "$WORK/nbd.sock"
        spawn "$WORK/nbdkit.log" nbdkit -f -r --unix "$WORK/nbd.sock" file file="$IMAGE"
        wait_until 10 test -S "$WORK/nbd.sock" || { cat "$WORK/nbdkit.log" >&2; die "nbdkit did not start"; }
}

# try_map NAME SOURCE [OPTIONS...]: maps with fuseloopctl and prints the device, or shows why
# not and fails.
# Returns fuseloopctl's exit status, 124 if it timed out.
try_map() {
        local name=$1 source=$2 out rc=0
        shift 2
        out=$(fuseloopctl map "$@" "$name" "$source" 2>"$WORK/map.err") || rc=$?
        if [ "$rc" = 0 ] && [ -n "$out" ]; then
                echo "${out##*$'\n'}"
                return 0
        fi
        [ "$rc" != 124 ] || echo "no answer within $CTL_TIMEOUT s" >>"$WORK/map.err"
        note "fuseloopctl map $* $name $source: $(tr '\n' ' ' <"$WORK/map.err")" >&2
        return $((rc == 0 ? 1 : rc))
}

# fl_map NAME SOURCE [OPTIONS...]: try_map, but a refused map ends the subject as "not
# supported" (exit status 3); one that got no answer in time is a failure.
fl_map() {
        local rc=0
        try_map "$@" || rc=$?
        case $rc in
        0) ;;
        124) exit 1 ;;
        *) exit 3 ;;
        esac
}

# fl_path KEY NAME: records how the daemon reads mapping NAME ("ReadPath": passthrough, daemon).
fl_path() {
        local path
        path=$(fuseloopctl status --json "$2" |
               python3 -c 'import json, sys; print(json.load(sys.stdin).get("read_path") or "-")') || path="-"
        record "$1" path "$path"
}

# Prints the daemon's own view of a mapping (latency, cache hits, anything about passthrough).
fl_status() {
        fuseloopctl status "$1" 2>/dev/null | grep -Ei 'passthrough|direct i/o|read requests|read latency|cache hits' |
                sed 's/^/   status: /' || true
}

subject_kernel() {
        local dev
        dev=$(attach_loop "$IMAGE")
        note "$dev"
        measure kernel "$dev"
}

subject_fl_file() {
        local dev
        dev=$(fl_map "${PREFIX}file" "$IMAGE")
        note "$dev"
        fl_path fl-file "${PREFIX}file"
        measure fl-file "$dev"
        fl_status "${PREFIX}file"
}

# The read path through the daemon (FUSE reads served by copying from the source): the client
# option is --passthrough=off; --option passthrough=false is tried as well.
subject_fl_copy() {
        local dev
        dev=$(try_map "${PREFIX}copy" "$IMAGE" --passthrough=off) ||
                dev=$(fl_map "${PREFIX}copy" "$IMAGE" --option passthrough=false)
        note "$dev"
        fl_path fl-copy "${PREFIX}copy"
        measure fl-copy "$dev"
        fl_status "${PREFIX}copy"
}

# The same with the loop device reading its FUSE file buffered (the default before the read path
# turned direct I/O on): what direct I/O brings.
subject_fl_copy_buf() {
        local dev
        dev=$(fl_map "${PREFIX}copybuf" "$IMAGE" --passthrough=off --direct-io=off)
        note "$dev"
        fl_path fl-copy-buf "${PREFIX}copybuf"
        measure fl-copy-buf "$dev"
        fl_status "${PREFIX}copybuf"
}

subject_nbdfuse() {
        local mnt=$WORK/nbdfuse dev
        start_nbdkit
        mkdir -p "$mnt"
        reg mount "$mnt"
        spawn "$WORK/nbdfuse.log" nbdfuse -r "$mnt" --unix "$WORK/nbd.sock"
        wait_until 10 is_mounted "$mnt" || { cat "$WORK/nbdfuse.log" >&2; die "nbdfuse did not mount $mnt"; }
        dev=$(attach_loop "$mnt/nbd")
        note "$dev on $mnt/nbd"
        measure nbdfuse "$dev"
}

subject_qsd() {
        local exp=$WORK/qsd-export dev
        : >"$exp"
        reg mount "$exp"
        spawn "$WORK/qsd.log" qemu-storage-daemon \
                --blockdev "driver=file,node-name=img,filename=$IMAGE,read-only=on" \
                --export "type=fuse,id=exp,node-name=img,mountpoint=$exp,writable=off"
        wait_until 10 is_mounted "$exp" || { cat "$WORK/qsd.log" >&2; die "qemu-storage-daemon did not export $exp"; }
        dev=$(attach_loop "$exp")
        note "$dev on $exp"
        measure qsd "$dev"
}

subject_fl_nbd() {
        local dev
        start_nbdkit
        dev=$(fl_map "${PREFIX}nbd" "nbd+unix:///?socket=$WORK/nbd.sock")
        note "$dev"
        fl_path fl-nbd "${PREFIX}nbd"
        measure fl-nbd "$dev"
        fl_status "${PREFIX}nbd"
}

# run_subject KEY: runs subject KEY in a subshell (errexit on), then releases what it made,
# whatever the outcome. Exit status 3 means "not supported", anything else a failure; both are
# recorded and the run goes on.
run_subject() {
        local key=$1 rc
        say "$key: ${LABEL[$key]}"
        set +e
        (
                set -e
                # fio stops early on SIGINT and exits 0: end the subshell then too.
                trap 'exit 130' INT TERM HUP
                "subject_${key//-/_}"
        )
        rc=$?
        set -e
        [ "$rc" -lt 128 ] || exit "$rc"   # interrupted
        release_resources
        case $rc in
        0) ;;
        3) record "$key" status "n/a (not supported by this build)" ;;
        *) record "$key" status "failed (exit status $rc, see above)"
           warn "$key failed"
           case $key in fl-*) daemon_log; fuseloopctl list >&2 || true ;; esac ;;
        esac
}

# ---------------------------------------------- map latency, daemon RSS --

# map_us NAME SOURCE: maps SOURCE, reads the first 4 KiB of the device with O_DIRECT, prints
# the microseconds that took.
map_us() {
        local t0 t1 dev
        t0=$(now_us)
        dev=$(fuseloopctl map "$1" "$2")
        dd if="$dev" of=/dev/null bs=4096 count=1 iflag=direct status=none
        t1=$(now_us)
        echo $((t1 - t0))
}

# cmd_latency_p50: CYCLES map/unmap cycles of one more mapping (after one warm-up cycle) with
# the commands (fuseloopctl map, dd), process starts included; prints the median in ms.
cmd_latency_p50() {
        local i s samples=()
        for i in $(seq 0 "$CYCLES"); do
                s=$(map_us "${PREFIX}cycle" "$WORK/small/cycle")
                fuseloopctl unmap "${PREFIX}cycle"
                [ "$i" = 0 ] || samples+=("$s")
        done
        awk -v us="$(median "${samples[@]}")" 'BEGIN { printf "%.2f", us / 1000 }'
}

# call_latency_p50: the same from the MapURI call until the first read returned, in one process
# (bench/map-latency.py); prints the median in ms.
call_latency_p50() {
        local us
        us=$("$PYTHON" "$SRC/bench/map-latency.py" "${PREFIX}cycle" "$WORK/small/cycle" "$CYCLES")
        [ -n "$us" ] || return 1
        awk -v us="$us" 'BEGIN { printf "%.2f", us / 1000 }'
}

# latency_p50 KEY-SUFFIX LABEL: records and shows both figures.
latency_p50() {
        local v
        v=$(call_latency_p50)
        record fl "map$1" "$v"
        note "map latency p50, $2: $v ms from the D-Bus call to the first read"
        v=$(cmd_latency_p50)
        record fl "mapcmd$1" "$v"
        note "map latency p50, $2: $v ms from starting fuseloopctl map to the end of dd"
}

map_scale() {
        local i t0 t1 v
        mkdir -p "$WORK/small"
        for i in $(seq 1 "$MAPPINGS") cycle; do truncate -s 1M "$WORK/small/$i"; done
        note "daemon pid $FL_PID, VmRSS with no mapping: $(rss_kib "$FL_PID") KiB"

        latency_p50 1 "as the only mapping"

        # MAPPINGS-1 mappings, RSS noted at 1 and 100; the cycled one makes MAPPINGS.
        t0=$(now_us)
        for i in $(seq 1 $((MAPPINGS - 1))); do
                fuseloopctl map "${PREFIX}s$i" "$WORK/small/$i" >/dev/null
                case $i in 1|100) record fl "rss$i" "$(rss_kib "$FL_PID")"; note "VmRSS with $i mappings: $(rss_kib "$FL_PID") KiB" ;; esac
        done
        t1=$(now_us)
        record fl addN "$(awk -v t=$((t1 - t0)) -v n=$((MAPPINGS - 1)) 'BEGIN { printf "%.1f", t / n / 1000 }')"
        note "mapping $((MAPPINGS - 1)) in a row: $(awk -v t=$((t1 - t0)) 'BEGIN { printf "%.1f", t / 1e6 }') s"

        latency_p50 N "beside $((MAPPINGS - 1)) others"

        fuseloopctl map "${PREFIX}s$MAPPINGS" "$WORK/small/$MAPPINGS" >/dev/null
        record fl rssN "$(rss_kib "$FL_PID")"
        note "VmRSS with $MAPPINGS mappings: $(rss_kib "$FL_PID") KiB"

        t0=$(now_us)
        unmap_ours
        t1=$(now_us)
        record fl rmN "$(awk -v t=$((t1 - t0)) -v n="$MAPPINGS" 'BEGIN { printf "%.1f", t / n / 1000 }')"
        note "unmapping $MAPPINGS in a row: $(awk -v t=$((t1 - t0)) 'BEGIN { printf "%.1f", t / 1e6 }') s"
}

# ---------------------------------------------------------------- report --

# report MARKDOWN-FILE: prints the table; writes the markdown (or merges it into the file).
report() {
        python3 - "$WORK/results" "$1" "$MAPPINGS" "$CYCLES" "$MACHINE" "${SUBJECTS[@]}" <<'EOF'
import os, sys
results, md_file, mappings, cycles, machine = sys.argv[1:6]
subjects = sys.argv[6:]
labels = dict(l.split("=", 1) for l in os.environ["BENCH_LABELS"].split("\n") if l)
data = {}
for line in open(results):
    key, metric, value = line.rstrip("\n").split("\t")
    data.setdefault(key, {})[metric] = value

def num(v):
    v = float(v)
    return "%.0f" % v if v >= 100 else "%.1f" % v if v >= 10 else "%.2f" % v

COLS = [("seq", "seq 1M qd16 MiB/s"), ("iops", "rand 4k qd32 IOPS"),
        ("p50", "qd1 p50 µs"), ("p99", "qd1 p99 µs"), ("cache", "page cache ×size")]
base = data.get("kernel", {})
rows = []
for s in subjects:
    d = data.get(s, {})
    if "status" in d:
        rows.append([labels[s], d["status"]] + [""] * (len(COLS) - 1))
        continue
    row = [labels[s]]
    for m, _ in COLS:
        if m not in d:
            row.append("-")
            continue
        cell = num(d[m])
        if m in base and float(base[m]) >= 0.05:
            cell += " (%.2f×)" % (float(d[m]) / float(base[m]))
        row.append(cell)
    rows.append(row)
head = ["subject"] + [h for _, h in COLS]

fl = data.get("fl", {})
extra = []
paths = ["%s: %s" % (labels[s], data[s]["path"]) for s in subjects if "path" in data.get(s, {})]
if paths:
    extra.append("fuseloopd read path (ReadPath of the mapping): " + "; ".join(paths))
for key, what in (("map", "from the MapURI call until a first read of the device returned"),
                  ("mapcmd", "from starting `fuseloopctl map` until `dd` read the device, process "
                             "starts included")):
    if key + "1" not in fl:
        continue
    extra.append("map latency p50 %s, %s cycles: as the only mapping %s ms" % (what, cycles, fl[key + "1"]))
    if key + "N" in fl:
        extra[-1] += ", beside %d others %s ms (%.2f×)" % (
            int(mappings) - 1, fl[key + "N"], float(fl[key + "N"]) / float(fl[key + "1"]))
if "rss1" in fl and "rssN" in fl:
    per = (float(fl["rssN"]) - float(fl["rss1"])) / (int(mappings) - 1)
    extra.append("daemon RSS: %s KiB with 1 mapping, %s KiB with 100, %s KiB with %s: "
                 "%.1f KiB per extra mapping" % (fl["rss1"], fl.get("rss100", "-"), fl["rssN"],
                                                 mappings, per))
if "addN" in fl and "rmN" in fl:
    extra.append("adding %d mappings: %s ms each; removing %s: %s ms each (fuseloopctl, in a row)"
                 % (int(mappings) - 1, fl["addN"], mappings, fl["rmN"]))

# Plain table; a row with a status has it in place of its figures.
full = [r for r in rows if not r[1][:1].isalpha()] + [head]
w = [max(len(r[i]) for r in full) for i in range(len(head))]
def fmt(r):
    if r is not head and r[1][:1].isalpha():
        return r[0].ljust(w[0]) + "  " + r[1]
    return "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))
print(fmt(head))
print("  ".join("-" * x for x in w))
for r in rows:
    print(fmt(r))
print("(ratios: the figure divided by the kernel bound's; for p50, p99 and page cache lower is better)")
print()
for e in extra:
    print(e)
print(machine)

if md_file:
    md = ["Machine: " + machine, "",
          "| " + " | ".join(head) + " |",
          "|" + "---|" + "---:|" * len(COLS)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", "Ratios in parentheses: the figure divided by the kernel bound's (for p50, p99 "
           "and page cache, lower is better).", ""]
    md += ["- " + e for e in extra]
    text = "\n".join(md) + "\n"
    # The markers count only as lines of their own (the file may mention them in its text).
    begin, end = "\n<!-- bench-results:begin -->\n", "\n<!-- bench-results:end -->"
    old = open(md_file).read() if os.path.exists(md_file) else ""
    b, e = old.rfind(begin), old.rfind(end)
    if 0 <= b < e:
        text = old[:b + len(begin)] + text.rstrip("\n") + old[e:]
    else:
        text = "# fuseloop benchmark results\n\n" + text
    with open(md_file + ".tmp", "w") as f:
        f.write(text)
    os.replace(md_file + ".tmp", md_file)
    print("markdown written to", md_file)
EOF
}

# ------------------------------------------------------------------ main --

install_pkgs

exec 9>"$LOCK_FILE"
if ! flock -n 9; then
        say "waiting for $LOCK_FILE (the test suite or another benchmark runs)"
        flock 9
fi

build_and_install

# The services, with a state directory of this run: "stop" at the end stops only what this
# "start" started. "reload" lets the bus and udevd see the files just installed.
SERVICES_STATE=$(mktemp -d /run/fuseloop-services.bench.XXXXXX)
FUSELOOP_SERVICES_STATE=$SERVICES_STATE bash "$SERVICES_SH" start 2>&1 | sed 's/^/   /'
FUSELOOP_SERVICES_STATE=$SERVICES_STATE bash "$SERVICES_SH" reload >/dev/null 2>&1

# The work directory: a tmpfs of our own, large enough for the image and the small files.
WORK=$(realpath "$(mktemp -d /tmp/fuseloop-bench.XXXXXX)")
mount -t tmpfs -o "size=$((SIZE_MIB + 256))m,mode=0700" fuseloop-bench "$WORK"
REG=$WORK/registry
: >"$REG"
: >"$WORK/results"
IMAGE=$WORK/image
say "image: $SIZE_MIB MiB of random data in $WORK (tmpfs)"
head -c "$IMAGE_SIZE" /dev/urandom >"$IMAGE"

say "fuseloopd"
start_daemon

for s in "${SUBJECTS[@]}"; do
        case $s in fl-*) daemon_alive || die "fuseloopd (pid $FL_PID) is gone"; esac
        run_subject "$s"
done

if [ -z "${NO_SCALE:-}" ]; then
        say "fuseloopd: map latency and RSS with up to $MAPPINGS mappings"
        set +e
        ( set -e; trap 'exit 130' INT TERM HUP; map_scale )
        rc=$?
        set -e
        [ "$rc" -lt 128 ] || exit "$rc"
        [ "$rc" = 0 ] || { warn "the map latency / RSS part failed (exit status $rc)"; daemon_log; }
        unmap_ours
fi

MACHINE="$(nproc) vCPU ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(($(meminfo_kib MemTotal) / 1024 / 1024)) GiB RAM, kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC'); fuseloop $(git -C "$SRC" describe --always --dirty 2>/dev/null || echo '?') ($(basename "$BUILD"), release), fio $(fio --version | sed 's/^fio-//'), nbdkit $(nbdkit --version | awk '{ print $2 }'), qemu $(qemu-storage-daemon --version | awk 'NR == 1 { print $3 }'); image $SIZE_MIB MiB, seq: median of $SEQ_PASSES whole-device passes, rand: ${RUNTIME} s per job"
BENCH_LABELS=$(for s in "${SUBJECTS[@]}"; do printf '%s=%s\n' "$s" "${LABEL[$s]}"; done)
export BENCH_LABELS

say "results ($((SECONDS - T_START)) s)"
report "$MARKDOWN"
