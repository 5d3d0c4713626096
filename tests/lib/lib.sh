# shellcheck shell=bash
# lib.sh - common code of the integration tests; every tests/integration/test-*.sh sources it.
#
# Sourcing it: checks prerequisites (exit 77 if one is missing), takes the global test lock
# (/run/fuseloop-test.lock, so two runs never overlap), removes what an earlier, killed test may
# have left under the test run directory, makes a per-test temporary directory ($FL_TMP) and
# installs a cleanup trap that always runs on exit: it unmounts what the test mounted, stops the
# daemon it started (by pid), detaches leftover loop devices backed by the test run directory,
# removes temporary files and prints the daemon log if the test failed. A sanitizer report
# (ASan, LeakSanitizer, UBSan "runtime error:") in the daemon log or in another *.log file of
# the test fails the test even if every process exited with status 0.
#
# Test users, groups and polkit rules (make_test_user, make_test_group, add_polkit_rule) are
# recorded in /run/fuseloop-test.created and removed by the cleanup, or, if the test was killed,
# by the next test. The cleanup also fails a test during which bus activation started the
# installed fuseloopd (fuseloopctl auto-starts; busctl_ and flbus.py never do), and stops that
# daemon by its pid. A private system bus that a test started (private_bus_start) is stopped by
# the cleanup like every other process the test recorded in FL_PIDS.
#
# Environment (set by tests/meson.build; defaults for running a test by hand):
#   FUSELOOPD, FUSELOOPCTL      the binaries under test
#   FUSELOOP_SRC, FUSELOOP_BUILD  source and build roots
#   FUSELOOP_TEST_STRICT=1      a missing prerequisite is a failure, not a skip (tests/run.sh)
#   PYTHON                      python with python3-dbus and python3-gi (default /usr/bin/python3)
#   FUSELOOP_TEST_LOG_DIR=DIR   keep each test's daemon log as DIR/<test>.fuseloopd.log (by hand)
#
# Set by a test before start_daemon (opt-in; by default the daemon never sees NOTIFY_SOCKET):
#   FL_DAEMON_NOTIFY_SOCKET=PATH  start the daemon with NOTIFY_SOCKET=PATH (see sdnotify.py)
#   FL_DAEMON_ARGS=(...)          more options, after the default ones (a later option wins)
#   FL_DAEMON_WRAPPER=(...)       a command that runs the daemon by exec (so the pid stays), e.g.
#                                 (unshare --mount --propagation slave)
# and before private_bus_start:
#   FL_PRIVATE_BUS_POLICY=XML     more of the private bus's configuration (e.g. <policy> elements),
#                                 before the project's bus policy
#
# The daemon under test always runs as
#   $FUSELOOPD --run-dir /run/fuseloopd-test --log-level debug --idle-timeout 0 "${FL_DAEMON_ARGS[@]}"
# (never exiting for idleness unless a test asks for it)
# so nothing here ever touches the default run directory /run/fuseloopd, and every loop device
# whose backing file is under /run/fuseloopd-test was made by a test.

set -euo pipefail
set -E
# Keep stdout and stderr in one stream so meson's log shows them in order.
exec 2>&1

FL_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FL_TEST_NAME=$(basename "$0" .sh)
FUSELOOP_SRC=${FUSELOOP_SRC:-$(cd "$FL_LIB_DIR/../.." && pwd)}
FUSELOOP_BUILD=${FUSELOOP_BUILD:-$FUSELOOP_SRC/build}
FUSELOOPD=${FUSELOOPD:-$FUSELOOP_BUILD/fuseloopd}
FUSELOOPCTL=${FUSELOOPCTL:-$FUSELOOP_BUILD/fuseloopctl}
PYTHON=${PYTHON:-/usr/bin/python3}
export DBUS_SYSTEM_BUS_ADDRESS=${DBUS_SYSTEM_BUS_ADDRESS:-unix:path=/run/dbus/system_bus_socket}
export LC_ALL=C

FL_RUN_DIR=/run/fuseloopd-test
FL_LOCK_FILE=/run/fuseloop-test.lock
FL_DAEMON_RECORD=/run/fuseloop-test.daemon
FL_CREATED_RECORD=/run/fuseloop-test.created
FL_SHARED_BUS=unix:path=/run/dbus/system_bus_socket
FL_ACTIVATION_FILE=/usr/share/dbus-1/system-services/org.proxmox.FuseLoop1.service
FL_POLKIT_RULES_DIR=/etc/polkit-1/rules.d
FL_POLKIT_ACTION_PREFIX=org.proxmox.fuseloop.
FL_BUS_POLICY_SRC=$FUSELOOP_SRC/dbus/org.proxmox.FuseLoop1.conf
FL_BUS=org.proxmox.FuseLoop1
FL_PATH=/org/proxmox/FuseLoop1
FL_IFACE=org.proxmox.FuseLoop1
FL_MAPPING_IFACE=org.proxmox.FuseLoop1.Mapping
FL_ERR=org.proxmox.FuseLoop1.Error
FL_TMP_PREFIX=/tmp/fuseloop-test.

FL_TMP=
FL_DAEMON_ARGS=()
FL_DAEMON_WRAPPER=()
FL_DAEMON_CMDLINE=()
FL_DAEMON_PID=
FL_DAEMON_STATUS=
FL_DAEMON_EXIT_MS=
FL_DAEMON_LOG=
FL_MONITOR_PID=
FL_MONITOR_LOG=
FL_MOUNTS=()
FL_PIDS=()
# Servers that on SIGTERM wait for their clients (nbdkit waits for fuseloopd to disconnect): the
# cleanup ends them with SIGKILL, before anything else.
FL_KILL_PIDS=()
FL_TEST_STARTTIME=
FL_ACTIVATED_PID=
FL_ACTIVATED_STARTTIME=
FL_PRIVATE_BUS_PID=
FL_PRIVATE_BUS_POLICY=
ERR_OUT=

# ------------------------------------------------------------ messages --

# Messages go to stderr (the same stream as stdout, see above), so that helpers whose stdout is
# captured with $(...) can still report.
log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*" >&2; }
step() { printf '\n[%s] ==== %s\n' "$(date +%T.%3N)" "$*" >&2; }

# fail MESSAGE: ends the test with a failure, naming the test line that called the helper.
fail() {
        local i where=""

        for ((i = 1; i < ${#FUNCNAME[@]}; i++)); do
                [ "${BASH_SOURCE[$i]}" = "${BASH_SOURCE[0]}" ] && continue
                where="$(basename "${BASH_SOURCE[$i]}"):${BASH_LINENO[$((i - 1))]}"
                break
        done
        printf 'FAIL%s: %s\n' "${where:+ ($where)}" "$*" >&2
        exit 1
}

# skip REASON: a missing prerequisite (exit 77), or a failure under FUSELOOP_TEST_STRICT=1.
skip() {
        if [ "${FUSELOOP_TEST_STRICT:-0}" = 1 ]; then
                printf 'FAIL: missing prerequisite (FUSELOOP_TEST_STRICT=1): %s\n' "$*" >&2
                exit 1
        fi
        printf 'SKIP: %s\n' "$*" >&2
        exit 77
}

fl_on_err() {
        printf 'ERROR: line %s of %s: command failed (status %s): %s\n' "$2" "$3" "$1" "$4" >&2
}
trap 'fl_on_err $? $LINENO "$(basename "${BASH_SOURCE[0]}")" "$BASH_COMMAND"' ERR

# ------------------------------------------------------------- asserts --

assert_eq() { # EXPECTED ACTUAL [WHAT]
        [ "$1" = "$2" ] || fail "${3:-value}: expected '$1', got '$2'"
}

assert_ne() { # UNEXPECTED ACTUAL [WHAT]
        [ "$1" != "$2" ] || fail "${3:-value}: must not be '$1'"
}

assert_match() { # EXTENDED-REGEX STRING [WHAT]
        [[ $2 =~ $1 ]] || fail "${3:-value}: '$2' does not match /$1/"
}

assert_no_match() { # EXTENDED-REGEX STRING [WHAT]
        [[ ! $2 =~ $1 ]] || fail "${3:-value}: '$2' must not match /$1/"
}

assert_contains() { # TEXT SUBSTRING [WHAT]
        [[ $1 == *"$2"* ]] || fail "${3:-output} does not contain '$2':"$'\n'"$1"
}

# expect_error ERROR COMMAND...: COMMAND must fail and its output (stdout and stderr) must name
# the error: ERROR is a full D-Bus error name or a short one (Busy, NotFound, ...) taken as
# org.proxmox.FuseLoop1.Error.ERROR. The output is left in $ERR_OUT.
expect_error() {
        local want=$1 rc=0

        shift
        case $want in
        *.*) ;;
        *) want=$FL_ERR.$want ;;
        esac
        ERR_OUT=$("$@" 2>&1) || rc=$?
        [ "$rc" -ne 0 ] || fail "expected '$*' to fail with $want, but it succeeded: $ERR_OUT"
        [[ $ERR_OUT == *"$want"* ]] ||
                fail "expected '$*' to fail with $want, got status $rc: $ERR_OUT"
        log "failed as expected with $want: $ERR_OUT"
}

# expect_failure REGEX COMMAND...: COMMAND must fail and its output match REGEX
# (case-insensitive extended regex). The output is left in $ERR_OUT.
expect_failure() {
        local re=$1 rc=0

        shift
        ERR_OUT=$("$@" 2>&1) || rc=$?
        [ "$rc" -ne 0 ] || fail "expected '$*' to fail, but it succeeded: $ERR_OUT"
        grep -Eqi -- "$re" <<<"$ERR_OUT" ||
                fail "'$*' failed (status $rc) but its output does not match /$re/: $ERR_OUT"
        log "failed as expected (status $rc): $ERR_OUT"
}

# ---------------------------------------------------------------- waits --

now_ms() {
        local t=${EPOCHREALTIME//[.,]/}

        echo $((t / 1000))
}

# wait_until SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds; returns 1 after
# the deadline.
wait_until() {
        local deadline

        deadline=$(($(now_ms) + $1 * 1000))
        shift
        until "$@" >/dev/null 2>&1; do
                [ "$(now_ms)" -lt "$deadline" ] || return 1
                sleep 0.1
        done
}

# wait_for SECONDS DESCRIPTION COMMAND...: like wait_until, but fails the test on timeout.
wait_for() {
        local secs=$1 desc=$2 start

        shift 2
        start=$(now_ms)
        wait_until "$secs" "$@" || fail "timed out after ${secs}s waiting for $desc"
        log "waited $(($(now_ms) - start)) ms for $desc"
}

# forget_pid PID: PID (recorded in FL_PIDS) was reaped; the cleanup must not signal it (the
# number may be reused).
forget_pid() {
        local keep=() p

        for p in "${FL_PIDS[@]}"; do
                [ "$p" = "$1" ] || keep+=("$p")
        done
        FL_PIDS=("${keep[@]}")
}

# answers_within MS WHAT COMMAND...: COMMAND must succeed within MS milliseconds (measured from
# before it starts until it exited); its output is left in $FL_TMP/answer.out.
answers_within() {
        local ms=$1 what=$2 start took

        shift 2
        start=$(now_ms)
        "$@" >"$FL_TMP/answer.out" 2>&1 || fail "$what failed: $(cat "$FL_TMP/answer.out")"
        took=$(($(now_ms) - start))
        log "$what answered in $took ms"
        [ "$took" -le "$ms" ] || fail "$what took $took ms (at most $ms ms allowed)"
}

alive() { [ -e "/proc/$1" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }
not_alive() { ! alive "$1"; }

starttime() {
        local stat f

        stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        read -r -a f <<<"${stat##*) }"
        printf '%s\n' "${f[19]}"
}

# ------------------------------------------------------------------ bus --

busctl_() { busctl --system --auto-start=no --timeout=120 "$@"; }

has_owner() {
        busctl_ call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                NameHasOwner s "$FL_BUS" 2>/dev/null | grep -q '^b true$'
}
no_owner() { ! has_owner; }

owner_pid() {
        busctl_ call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                GetConnectionUnixProcessID s "$FL_BUS" 2>/dev/null | awk '{print $2}'
}

# bus_path_encode NAME: sd_bus_path_encode() of one label ([A-Za-z0-9] kept, a leading digit
# and everything else as _xx).
bus_path_encode() {
        local s=$1 out="" i c

        [ -n "$s" ] || { echo _; return; }
        for ((i = 0; i < ${#s}; i++)); do
                c=${s:i:1}
                if [[ $c == [A-Za-z] ]] || { [ "$i" -gt 0 ] && [[ $c == [0-9] ]]; }; then
                        out+=$c
                else
                        out+=$(printf '_%02x' "'$c")
                fi
        done
        echo "$out"
}

mapping_path() { echo "$FL_PATH/mapping/$(bus_path_encode "$1")"; }

flbus() { "$PYTHON" "$FL_LIB_DIR/flbus.py" "$@"; }

# get_prop NAME PROPERTY: prints one property of a mapping object, without type and quotes.
get_prop() {
        local out

        out=$(busctl_ get-property "$FL_BUS" "$(mapping_path "$1")" "$FL_MAPPING_IFACE" "$2") ||
                fail "could not read property $2 of mapping '$1'"
        out=${out#* }
        out=${out#\"}
        out=${out%\"}
        echo "$out"
}

# list_names: the names of all mappings, one a line (from List()).
list_names() { flbus list | cut -f1; }

# list_row NAME: the List() row of NAME (tab-separated), or nothing.
list_row() { flbus list | awk -F'\t' -v n="$1" '$1 == n'; }

mapping_listed() { [ -n "$(list_row "$1")" ]; }
mapping_not_listed() { [ -z "$(list_row "$1")" ]; }

# ------------------------------------------------------------- monitor --

# start_monitor: records MappingAdded/MappingRemoved signals in $FL_MONITOR_LOG from now on.
start_monitor() {
        [ -z "$FL_MONITOR_PID" ] || fail "monitor already running"
        FL_MONITOR_LOG=$FL_TMP/signals.log
        : >"$FL_MONITOR_LOG"
        "$PYTHON" -u "$FL_LIB_DIR/flbus.py" monitor >>"$FL_MONITOR_LOG" 2>&1 8>&- &
        FL_MONITOR_PID=$!
        if ! wait_until 10 grep -q '^READY$' "$FL_MONITOR_LOG"; then
                cat "$FL_MONITOR_LOG"
                fail "signal monitor did not become ready"
        fi
}

# wait_signal SECONDS REGEX: waits until a recorded signal line matches REGEX (extended).
wait_signal() {
        if ! wait_until "$1" grep -Eq -- "$2" "$FL_MONITOR_LOG"; then
                log "signals seen:"
                cat "$FL_MONITOR_LOG"
                fail "no signal matching /$2/ within $1 s"
        fi
        log "signal: $(grep -E -- "$2" "$FL_MONITOR_LOG" | head -n 1)"
}

stop_monitor() {
        [ -n "$FL_MONITOR_PID" ] || return 0
        kill "$FL_MONITOR_PID" 2>/dev/null || true
        wait "$FL_MONITOR_PID" 2>/dev/null || true
        FL_MONITOR_PID=
}

# -------------------------------------------------------------- daemon --

# run_second_daemon: starts another fuseloopd beside the test's own (with
# FL_DAEMON_NOTIFY_SOCKET passed on like start_daemon does), which must give up by itself within
# 15 s because the bus name is taken. Leaves its pid in SECOND_PID, its exit status in
# SECOND_STATUS and its output in $FL_TMP/second.log (also printed).
# shellcheck disable=SC2034 # SECOND_STATUS is read by the tests
run_second_daemon() {
        local notify=()

        FL_DAEMON_CMDLINE=(--run-dir "$FL_RUN_DIR" --log-level debug --idle-timeout 0 "${FL_DAEMON_ARGS[@]}")
        [ -z "${FL_DAEMON_NOTIFY_SOCKET:-}" ] || notify=("NOTIFY_SOCKET=$FL_DAEMON_NOTIFY_SOCKET")
        env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES "${notify[@]}" \
                "${FL_DAEMON_WRAPPER[@]}" "$FUSELOOPD" "${FL_DAEMON_CMDLINE[@]}" \
                </dev/null >"$FL_TMP/second.log" 2>&1 8>&- &
        SECOND_PID=$!
        FL_PIDS+=("$SECOND_PID")
        if ! wait_until 15 not_alive "$SECOND_PID"; then
                cat "$FL_TMP/second.log"
                fail "a second fuseloopd (pid $SECOND_PID) is still running 15 s after start"
        fi
        SECOND_STATUS=0
        wait "$SECOND_PID" || SECOND_STATUS=$?
        unset 'FL_PIDS[-1]'
        cat "$FL_TMP/second.log"
}

# start_daemon: starts the daemon under test in the background and waits (10 s at
# most) until it owns the bus name. Fails, with its log, if it exits meanwhile. The daemon gets
# no NOTIFY_SOCKET (nor socket activation variables) from our environment; a test that wants to
# see its sd_notify() messages sets FL_DAEMON_NOTIFY_SOCKET=PATH.
start_daemon() {
        local pid st owner deadline notify=()

        if has_owner; then
                owner=$(owner_pid)
                fail "$FL_BUS is already owned by pid $owner ($(tr '\0' ' ' <"/proc/$owner/cmdline" 2>/dev/null)); not started by this test"
        fi
        FL_DAEMON_CMDLINE=(--run-dir "$FL_RUN_DIR" --log-level debug --idle-timeout 0 "${FL_DAEMON_ARGS[@]}")
        printf '\n===== %s: starting %s %s %s\n' "$(date +%T.%3N)" "${FL_DAEMON_WRAPPER[*]}" \
                "$FUSELOOPD" "${FL_DAEMON_CMDLINE[*]}" >>"$FL_DAEMON_LOG"
        if [ -n "${FL_DAEMON_NOTIFY_SOCKET:-}" ]; then
                notify=("NOTIFY_SOCKET=$FL_DAEMON_NOTIFY_SOCKET")
                printf '===== NOTIFY_SOCKET=%s\n' "$FL_DAEMON_NOTIFY_SOCKET" >>"$FL_DAEMON_LOG"
        fi
        env -u NOTIFY_SOCKET -u LISTEN_FDS -u LISTEN_PID -u LISTEN_FDNAMES "${notify[@]}" \
                "${FL_DAEMON_WRAPPER[@]}" "$FUSELOOPD" "${FL_DAEMON_CMDLINE[@]}" \
                </dev/null >>"$FL_DAEMON_LOG" 2>&1 8>&- &
        pid=$!
        FL_DAEMON_PID=$pid
        printf '%s %s\n' "$pid" "$(starttime "$pid" || echo 0)" >"$FL_DAEMON_RECORD"
        deadline=$(($(now_ms) + 10000))
        while :; do
                if ! alive "$pid"; then
                        st=0
                        wait "$pid" || st=$?
                        FL_DAEMON_PID=
                        rm -f "$FL_DAEMON_RECORD"
                        fail "fuseloopd exited with status $st during start-up"
                fi
                if has_owner; then
                        owner=$(owner_pid)
                        [ "$owner" = "$pid" ] ||
                                fail "$FL_BUS is owned by pid $owner, not by the daemon we started ($pid)"
                        break
                fi
                [ "$(now_ms)" -lt "$deadline" ] ||
                        fail "fuseloopd (pid $pid) did not own $FL_BUS within 10 s"
                sleep 0.1
        done
        log "fuseloopd running as pid $pid"
}

# fl_stop_daemon SIGNAL SECONDS: sends SIGNAL to the daemon we started and waits for its exit
# (SECONDS at most; then SIGKILL). Sets $FL_DAEMON_STATUS. Returns 1 (after a message) if it had
# to be killed. Never exits, so that the cleanup can use it.
fl_stop_daemon() {
        local sig=$1 secs=$2 pid=$FL_DAEMON_PID rc=0

        if alive "$pid"; then
                kill -"$sig" "$pid" 2>/dev/null || log "could not send SIG$sig to fuseloopd (pid $pid)"
        fi
        if ! wait_until "$secs" not_alive "$pid"; then
                log "fuseloopd (pid $pid) did not exit within ${secs}s of SIG$sig, sending SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                rc=1
        fi
        FL_DAEMON_STATUS=0
        wait "$pid" 2>/dev/null || FL_DAEMON_STATUS=$?
        FL_DAEMON_PID=
        rm -f "$FL_DAEMON_RECORD"
        log "fuseloopd (pid $pid) exited with status $FL_DAEMON_STATUS after SIG$sig"
        return "$rc"
}

# stop_daemon [SIGNAL [SECONDS]]: sends SIGNAL (default TERM) to the daemon we started, waits for
# its exit (30 s at most; then SIGKILL and fail) and leaves its exit status in
# $FL_DAEMON_STATUS. After SIGTERM, it also checks that the daemon released its name and left
# nothing behind in the run directory. SIGKILL skips those checks.
stop_daemon() {
        local sig=${1:-TERM} secs=${2:-30}

        [ -n "$FL_DAEMON_PID" ] || fail "stop_daemon: no daemon started"
        fl_stop_daemon "$sig" "$secs" || fail "fuseloopd did not exit within ${secs}s of SIG$sig (killed)"
        [ "$sig" != KILL ] && [ "$sig" != 9 ] || return 0
        wait_for 5 "release of $FL_BUS" no_owner
        assert_run_dir_clean
}

# wait_daemon_exit SECONDS: waits until the daemon we started exits by itself (fails the test if
# it still runs after SECONDS), reaps it and forgets it like fl_stop_daemon does. Leaves its exit
# status in $FL_DAEMON_STATUS and the time it was first seen gone in $FL_DAEMON_EXIT_MS (now_ms).
# shellcheck disable=SC2034 # FL_DAEMON_EXIT_MS is read by the tests
wait_daemon_exit() {
        local secs=$1 pid=$FL_DAEMON_PID

        [ -n "$pid" ] || fail "wait_daemon_exit: no daemon started"
        wait_until "$secs" not_alive "$pid" || fail "fuseloopd (pid $pid) still runs after ${secs}s"
        FL_DAEMON_EXIT_MS=$(now_ms)
        FL_DAEMON_STATUS=0
        wait "$pid" 2>/dev/null || FL_DAEMON_STATUS=$?
        FL_DAEMON_PID=
        rm -f "$FL_DAEMON_RECORD"
        log "fuseloopd (pid $pid) exited by itself with status $FL_DAEMON_STATUS"
}

# ------------------------------------------------------- devices, mounts --

# loop_devices_backed_by_run_dir: "DEVICE BACKING-FILE" of every loop device whose backing file
# is in the test run directory.
loop_devices_backed_by_run_dir() {
        losetup -l -n --raw -O NAME,BACK-FILE 2>/dev/null |
                awk -v d="$FL_RUN_DIR/" 'index($2, d) == 1 { print $1, $2 }'
}

# mounts_under PREFIX: mount points that start with PREFIX (from /proc/self/mountinfo).
mounts_under() {
        awk -v p="$1" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo
}

# backing_file DEVICE: the loop device's backing file as sysfs reports it.
backing_file() {
        local n=${1#/dev/}

        cat "/sys/block/$n/loop/backing_file" 2>/dev/null || true
}

# assert_run_dir_clean: no loop device backed by, no mount in and no file in the run directory.
assert_run_dir_clean() {
        local loops mounts files

        loops=$(loop_devices_backed_by_run_dir)
        mounts=$(mounts_under "$FL_RUN_DIR/")
        files=$(find "$FL_RUN_DIR" -mindepth 1 -maxdepth 1 2>/dev/null || true)
        [ -z "$loops$mounts$files" ] ||
                fail "left behind in $FL_RUN_DIR: loop devices: [${loops//$'\n'/, }] mounts: [${mounts//$'\n'/, }] files: [${files//$'\n'/, }]"
}

# assert_nothing_left NAME: no loop device backed by, no mount on and no file at
# $FL_RUN_DIR/NAME; and (if our daemon runs) NAME is neither listed nor has a bus object.
assert_nothing_left() {
        local name=$1 back=$FL_RUN_DIR/$1 loops path

        loops=$(losetup -l -n --raw -O NAME,BACK-FILE 2>/dev/null |
                awk -v b="$back" '$2 == b || index($2, b " ") == 1 || index($2, b "\\x20") == 1 { print $1 }')
        [ -z "$loops" ] || fail "'$name': loop device(s) still attached to $back: $loops"
        ! awk -v p="$back" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo ||
                fail "'$name': $back is still mounted"
        if [ -e "$back" ] || [ -L "$back" ]; then
                fail "'$name': $back still exists"
        fi
        if [ -n "$FL_DAEMON_PID" ]; then
                mapping_not_listed "$name" || fail "'$name' is still listed: $(list_row "$name")"
                path=$(mapping_path "$name")
                ! busctl_ tree --list "$FL_BUS" 2>/dev/null | grep -qxF -- "$path" ||
                        fail "'$name': bus object $path still exists"
        fi
}

# assert_nothing_mapped: List() is empty, no mapping objects, run directory clean.
assert_nothing_mapped() {
        local names objs

        assert_run_dir_clean
        [ -n "$FL_DAEMON_PID" ] || return 0
        names=$(list_names)
        [ -z "$names" ] || fail "mappings listed: $names"
        objs=$(busctl_ tree --list "$FL_BUS" | grep "^$FL_PATH/mapping/" || true)
        [ -z "$objs" ] || fail "mapping objects on the bus: $objs"
}

# mount_ro DEVICE MOUNTPOINT [FSTYPE]: mounts read-only and remembers it for cleanup.
mount_ro() {
        mkdir -p "$2"
        mount -o ro ${3:+-t "$3"} "$1" "$2" || fail "mount -o ro $1 $2 failed"
        FL_MOUNTS+=("$2")
        log "mounted $1 on $2 ($(findmnt -n -o FSTYPE,OPTIONS --mountpoint "$2"))"
}

umount_tracked() { # MOUNTPOINT
        local i

        umount "$1" || fail "umount $1 failed"
        for i in "${!FL_MOUNTS[@]}"; do
                [ "${FL_MOUNTS[$i]}" != "$1" ] || unset 'FL_MOUNTS[i]'
        done
        log "unmounted $1"
}

# drop_caches: drops clean page cache so that following reads really reach the loop device
# and the daemon (harmless for other users of the machine: clean pages only).
drop_caches() {
        sync
        echo 3 >/proc/sys/vm/drop_caches
}

# prop_is NAME PROPERTY VALUE: the mapping's property has that value (get_prop's notation).
prop_is() { [ "$(get_prop "$1" "$2")" = "$3" ]; }

# loop_released DEVICE: the loop device has no backing file any more.
loop_released() { [ -z "$(backing_file "$1")" ]; }

is_block() { [ -b "$1" ]; }
is_not_block() { [ ! -b "$1" ]; }

# device_size DEVICE: size in bytes.
device_size() { blockdev --getsize64 "$1"; }

# ------------------------------------------------------------- the CLI --

ctl() { "$FUSELOOPCTL" "$@"; }

# ctl_map [OPTIONS] NAME SOURCE: maps with fuseloopctl and prints the device it reported
# (the last line of its output, which must be /dev/loopN).
ctl_map() {
        local out dev

        out=$("$FUSELOOPCTL" map "$@") || fail "fuseloopctl map $* failed (status $?): $out"
        dev=$(tail -n 1 <<<"$out")
        [[ $dev =~ ^/dev/loop[0-9]+$ ]] || fail "fuseloopctl map $* printed '$out', expected /dev/loopN"
        log "fuseloopctl map $* -> $dev"
        echo "$dev"
}

# busctl_map_uri NAME URI: MapURI through busctl; prints the device.
busctl_map_uri() {
        local out path dev

        out=$(busctl_ call "$FL_BUS" "$FL_PATH" "$FL_IFACE" MapURI 'ssa{sv}' "$1" "$2" 0) ||
                fail "busctl MapURI '$1' '$2' failed: $out"
        # os "/org/proxmox/FuseLoop1/mapping/NAME" "/dev/loopN"
        read -r _ path dev <<<"$out"
        path=${path//\"/}
        dev=${dev//\"/}
        assert_eq "$(mapping_path "$1")" "$path" "object path returned by MapURI('$1')"
        [[ $dev =~ ^/dev/loop[0-9]+$ ]] || fail "MapURI returned device '$dev'"
        log "busctl MapURI $1 $2 -> $path $dev"
        echo "$dev"
}

# ------------------------------------------------- test users, groups, polkit --

# fl_record KIND NAME: remembers something this test created (KIND: user, group, file) in
# $FL_CREATED_RECORD, so that the cleanup of this test, or the start of the next test if this one
# was killed, removes it. Only names made here are ever recorded.
fl_record() { printf '%s %s\n' "$1" "$2" >>"$FL_CREATED_RECORD"; }

# fl_random_name PREFIX: PREFIX and 8 random hex digits, neither a user nor a group yet.
fl_random_name() {
        local n

        while :; do
                n=$1$(printf '%04x%04x' "$RANDOM" "$RANDOM")
                getent passwd "$n" >/dev/null || getent group "$n" >/dev/null || break
        done
        echo "$n"
}

fl_need_accounts() {
        local t

        for t in useradd userdel groupadd groupdel runuser pgrep; do
                command -v "$t" >/dev/null || skip "$t is not installed"
        done
}

# make_test_group VAR: makes a new system group (fltg-XXXXXXXX) and stores its name in VAR.
make_test_group() {
        local _fl_name

        fl_need_accounts
        _fl_name=$(fl_random_name fltg-)
        groupadd --system "$_fl_name" || fail "groupadd $_fl_name failed"
        fl_record group "$_fl_name"
        printf -v "$1" %s "$_fl_name"
        log "made test group $_fl_name (gid $(getent group "$_fl_name" | cut -d: -f3))"
}

# make_test_user VAR [GROUP...]: makes a new system user (flt-XXXXXXXX: no home directory, no
# login shell, primary group nogroup, a member of each GROUP) and stores its name in VAR.
make_test_user() {
        local _fl_var=$1 _fl_name _fl_groups

        shift
        fl_need_accounts
        _fl_name=$(fl_random_name flt-)
        _fl_groups=$(IFS=,; echo "$*")
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
                --no-user-group --gid nogroup ${_fl_groups:+--groups "$_fl_groups"} "$_fl_name" ||
                fail "useradd $_fl_name failed"
        fl_record user "$_fl_name"
        printf -v "$_fl_var" %s "$_fl_name"
        log "made test user $_fl_name (uid $(id -u "$_fl_name"), groups: $(id -Gn "$_fl_name"))"
}

# add_polkit_rule VAR: installs the JavaScript read from stdin as a rules file of its own in
# /etc/polkit-1/rules.d and stores its path in VAR. The file is written beside its final name and
# renamed into place, so polkitd, which reloads its rules by itself when the directory changes,
# never reads half of it. Use wait_polkit to wait until a rule is in effect.
add_polkit_rule() {
        local _fl_var=$1 _fl_base _fl_file _fl_tmp

        [ -d "$FL_POLKIT_RULES_DIR" ] || skip "no $FL_POLKIT_RULES_DIR (polkitd is not installed)"
        _fl_base=fuseloop-test.$FL_TEST_NAME.$$.$(printf '%04x%04x' "$RANDOM" "$RANDOM")
        _fl_file=$FL_POLKIT_RULES_DIR/40-$_fl_base.rules
        _fl_tmp=$FL_POLKIT_RULES_DIR/.$_fl_base.tmp
        if [ -e "$_fl_file" ] || [ -e "$_fl_tmp" ]; then
                fail "add_polkit_rule: $_fl_file or $_fl_tmp exists"
        fi
        fl_record file "$_fl_tmp"
        fl_record file "$_fl_file"
        cat >"$_fl_tmp" || fail "could not write $_fl_tmp"
        chmod 0644 "$_fl_tmp"
        mv -f "$_fl_tmp" "$_fl_file" || fail "could not rename $_fl_tmp to $_fl_file"
        printf -v "$_fl_var" %s "$_fl_file"
        log "installed polkit rules file $_fl_file:"$'\n'"$(cat "$_fl_file")"
}

# remove_polkit_rule FILE: removes a rules file that add_polkit_rule installed.
remove_polkit_rule() {
        rm -f -- "$1" || fail "could not remove $1"
        log "removed polkit rules file $1"
}

# as_user USER COMMAND...: runs COMMAND as USER with runuser (no login shell; the user's groups
# come from /etc/group) on the bus the test uses (DBUS_SYSTEM_BUS_ADDRESS is passed on). runuser
# forks and waits: $! of "as_user ... &" is runuser's pid, and user_child finds COMMAND.
as_user() {
        local _fl_user=$1

        shift
        # "|| return": a failure is the caller's to judge (the ERR trap reports it there if not).
        runuser -u "$_fl_user" -- env DBUS_SYSTEM_BUS_ADDRESS="$DBUS_SYSTEM_BUS_ADDRESS" LC_ALL=C "$@" 8>&- ||
                return
}

flbus_as() { # USER ARGS...: flbus.py as USER
        local _fl_user=$1

        shift
        as_user "$_fl_user" "$PYTHON" "$FL_LIB_DIR/flbus.py" "$@"
}

ctl_as() { # USER ARGS...: fuseloopctl as USER
        local _fl_user=$1

        shift
        as_user "$_fl_user" "$FUSELOOPCTL" "$@"
}

# ctl_map_as USER [OPTIONS] NAME SOURCE: like ctl_map, as USER.
ctl_map_as() {
        local _fl_user=$1 out dev

        shift
        out=$(ctl_as "$_fl_user" map "$@" 2>&1) ||
                fail "fuseloopctl map $* as $_fl_user failed (status $?): $out"
        dev=$(tail -n 1 <<<"$out")
        [[ $dev =~ ^/dev/loop[0-9]+$ ]] ||
                fail "fuseloopctl map $* as $_fl_user printed '$out', expected /dev/loopN"
        log "fuseloopctl map $* as $_fl_user -> $dev"
        echo "$dev"
}

# user_child PID COMM: the pid of the one process named COMM that is PID or a descendant of PID
# ("as_user ... &" starts a subshell, which runs runuser, which runs COMMAND as its child).
# Returns 1 if there is none or more than one.
user_child() {
        local level=("$1") next hits=() p

        while [ ${#level[@]} -gt 0 ]; do
                next=()
                for p in "${level[@]}"; do
                        [ "$(cat "/proc/$p/comm" 2>/dev/null)" != "$2" ] || hits+=("$p")
                        mapfile -t -O "${#next[@]}" next < <(pgrep -P "$p")
                done
                level=("${next[@]}")
        done
        [ ${#hits[@]} -eq 1 ] || return 1
        echo "${hits[0]}"
}

# polkit_allows USER ACTION [KEY VALUE]...: polkitd (on the machine's bus) says yes, without
# asking for a password, to a process of USER for ACTION with these details (pkcheck exit status
# 0). polkit takes details only from trusted callers, so root asks, about a "sleep" run as USER.
polkit_allows() {
        local _fl_user=$1 _fl_action=$2 _fl_args=() _fl_job _fl_pid='' _fl_rc=0 _fl_i

        shift 2
        while [ $# -ge 2 ]; do
                _fl_args+=(--detail "$1" "$2")
                shift 2
        done
        as_user "$_fl_user" sleep 60 </dev/null >/dev/null 2>&1 &
        _fl_job=$!
        for ((_fl_i = 0; _fl_i < 100; _fl_i++)); do
                _fl_pid=$(user_child "$_fl_job" sleep) && break
                sleep 0.05
        done
        if [ -z "$_fl_pid" ]; then
                kill "$_fl_job" 2>/dev/null
                wait "$_fl_job" 2>/dev/null
                log "polkit_allows: no sleep process of $_fl_user below pid $_fl_job"
                return 2
        fi
        DBUS_SYSTEM_BUS_ADDRESS=$FL_SHARED_BUS pkcheck --action-id "$_fl_action" --process "$_fl_pid" \
                "${_fl_args[@]}" >/dev/null 2>&1 || _fl_rc=$?
        kill "$_fl_pid" 2>/dev/null
        wait "$_fl_job" 2>/dev/null
        return "$_fl_rc"
}

polkit_refuses() { ! polkit_allows "$@"; }

# wait_polkit SECONDS USER ACTION [KEY VALUE]...: waits until polkit_allows says yes (polkitd has
# loaded a new rule).
wait_polkit() {
        local secs=$1

        shift
        command -v pkcheck >/dev/null || skip "pkcheck is not installed"
        wait_for "$secs" "polkitd to allow $1: $2${3:+ (details: ${*:3})}" polkit_allows "$@"
}

# grant_to_group GROUP ACTION[,ACTION...] USER...: installs a polkit rule (add_polkit_rule, so the
# cleanup removes it) that gives the members of GROUP each org.proxmox.fuseloop.ACTION (map,
# map-uri, unmap-other) without a password, and waits (30 s at most for each) until polkitd allows
# every ACTION to every USER.
grant_to_group() {
        # shellcheck disable=SC2034 # rule: the path add_polkit_rule stores; the cleanup removes it
        local group=$1 actions=() ids='' a u rule

        IFS=, read -r -a actions <<<"$2"
        shift 2
        for a in "${actions[@]}"; do
                ids+="${ids:+, }\"$FL_POLKIT_ACTION_PREFIX$a\""
        done
        add_polkit_rule rule <<EOF
polkit.addRule(function(action, subject) {
        if ([$ids].indexOf(action.id) >= 0 && subject.isInGroup("$group"))
                return polkit.Result.YES;
});
EOF
        for u in "$@"; do
                for a in "${actions[@]}"; do
                        wait_polkit 30 "$u" "$FL_POLKIT_ACTION_PREFIX$a"
                done
        done
}

# ------------------------------------------------------------ bus activation --

# fl_installed_daemon: the program that bus activation starts (Exec= of the activation file).
fl_installed_daemon() {
        local exe

        exe=$(sed -n 's/^Exec=\([^ ]*\).*/\1/p' "$FL_ACTIVATION_FILE" 2>/dev/null | head -n 1)
        echo "${exe:-/usr/sbin/fuseloopd}"
}

# is_installed_daemon PID: PID runs the installed fuseloopd.
is_installed_daemon() {
        local exe inst

        exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
        inst=$(fl_installed_daemon)
        [ "$exe" = "$inst" ] || [ "$exe" = "$inst (deleted)" ]
}

# shared_owner_pid: the pid that owns $FL_BUS on the machine's system bus (empty if none),
# whichever bus the test itself uses.
shared_owner_pid() { DBUS_SYSTEM_BUS_ADDRESS=$FL_SHARED_BUS owner_pid; }

# ticks_now: now, in the unit of starttime (clock ticks since boot).
ticks_now() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%d\n", $1 * hz }' /proc/uptime; }

# fl_end_process PID SECONDS: SIGTERM to PID (not our child, so it cannot be reaped here); SIGKILL
# if it still runs after SECONDS. Returns 1 if it had to be killed.
fl_end_process() {
        kill -TERM "$1" 2>/dev/null || return 0
        wait_until "$2" not_alive "$1" && return 0
        log "process $1 did not exit within $2 s of SIGTERM, sending SIGKILL"
        kill -KILL "$1" 2>/dev/null
        wait_until 5 not_alive "$1" || true
        return 1
}

# adopt_activated_daemon PID: PID is a fuseloopd that this test made the bus start (only
# test-activation does that); the cleanup stops it (SIGTERM, by pid and start time) if it still
# runs, without failing the test for it.
adopt_activated_daemon() {
        FL_ACTIVATED_STARTTIME=$(starttime "$1") || fail "process $1 is gone"
        FL_ACTIVATED_PID=$1
        log "bus-activated fuseloopd: pid $1"
}

forget_activated_daemon() {
        FL_ACTIVATED_PID=
        FL_ACTIVATED_STARTTIME=
}

# fl_check_activation: run by the cleanup after the test's own daemon stopped. Stops the daemon
# that the test adopted with adopt_activated_daemon, if it still runs. Any other installed fuseloopd
# that owns the name on the machine's bus and started during this test came from bus activation
# caused by this test (fuseloopctl auto-starts the daemon): it is stopped, and the function
# returns 1 so that the test fails.
fl_check_activation() {
        local pid st

        if [ -n "$FL_ACTIVATED_PID" ] &&
                [ "$(starttime "$FL_ACTIVATED_PID" 2>/dev/null)" = "$FL_ACTIVATED_STARTTIME" ]; then
                log "cleanup: stopping the bus-activated fuseloopd (pid $FL_ACTIVATED_PID) that this test started"
                fl_end_process "$FL_ACTIVATED_PID" 30
        fi
        forget_activated_daemon
        [ -n "$FL_TEST_STARTTIME" ] || return 0
        pid=$(shared_owner_pid)
        [ -n "$pid" ] || return 0
        is_installed_daemon "$pid" || return 0
        st=$(starttime "$pid") || return 0
        [ "$st" -ge "$FL_TEST_STARTTIME" ] || return 0
        echo "FAIL: bus activation started $(fl_installed_daemon) (pid $pid) during this test (a fuseloopctl call without the test's daemon?); stopping it" >&2
        fl_end_process "$pid" 30
        return 1
}

# ---------------------------------------------------------- private system bus --

# A test that must not touch the machine's system bus (it kills the bus, or it needs a bus on
# which no polkitd runs) runs a private dbus-daemon of its own and points itself, the daemon and
# every client at it (DBUS_SYSTEM_BUS_ADDRESS). That bus is a system bus like Debian's system.conf
# (method calls denied unless a policy allows them) on the socket $FL_TMP/bus, which every user
# may connect to once $FL_TMP is 0755 (make_data_file), with no service directory (nothing is
# activated: no polkitd), no user switch, pidfile or syslog, plus the project's bus policy. Its
# log is $FL_TMP/dbus-daemon.log.

# need_private_bus: skips the test unless it can run a private bus (dbus-daemon is installed and
# the project's bus policy is in the source tree). private_bus_start checks it too; a test calls
# it first to skip before it makes anything.
need_private_bus() {
        command -v dbus-daemon >/dev/null || skip "dbus-daemon is not installed"
        [ -r "$FL_BUS_POLICY_SRC" ] || skip "no bus policy at $FL_BUS_POLICY_SRC"
}

# bus_answers: the bus the test uses answers a call to the bus itself within 2 s.
bus_answers() {
        busctl --system --timeout=2 call org.freedesktop.DBus /org/freedesktop/DBus \
                org.freedesktop.DBus GetId >/dev/null 2>&1
}

# on_shared_bus COMMAND...: runs COMMAND against the machine's system bus, whichever bus the test
# itself uses.
on_shared_bus() { DBUS_SYSTEM_BUS_ADDRESS=$FL_SHARED_BUS "$@"; }

# private_bus_start: writes the configuration of the private bus ($FL_TMP/bus.conf, with
# $FL_PRIVATE_BUS_POLICY just before the project's policy), exports DBUS_SYSTEM_BUS_ADDRESS for it, starts dbus-daemon (our child; its pid in FL_PRIVATE_BUS_PID and
# FL_PIDS, so that the cleanup stops it) and waits until it answers (fails the test after 10 s).
# After private_bus_stop, it starts a new bus at the same address.
private_bus_start() {
        local socket=$FL_TMP/bus conf=$FL_TMP/bus.conf buslog=$FL_TMP/dbus-daemon.log

        need_private_bus
        [ -z "$FL_PRIVATE_BUS_PID" ] || fail "private_bus_start: the private bus (pid $FL_PRIVATE_BUS_PID) runs"
        cat >"$conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
$FL_PRIVATE_BUS_POLICY
  <include ignore_missing="no">$FL_BUS_POLICY_SRC</include>
</busconfig>
EOF
        export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$socket
        printf '\n===== %s: starting dbus-daemon\n' "$(date +%T.%3N)" >>"$buslog"
        dbus-daemon --config-file="$conf" --nofork --nopidfile --nosyslog </dev/null >>"$buslog" 2>&1 8>&- &
        FL_PRIVATE_BUS_PID=$!
        FL_PIDS+=("$FL_PRIVATE_BUS_PID")
        if ! wait_until 10 bus_answers; then
                cat "$buslog"
                fail "the private dbus-daemon (pid $FL_PRIVATE_BUS_PID) did not answer on $socket within 10 s"
        fi
        log "private dbus-daemon running as pid $FL_PRIVATE_BUS_PID on $DBUS_SYSTEM_BUS_ADDRESS"
}

# private_bus_stop [SIGNAL]: sends SIGNAL (default TERM; KILL is a crash, which leaves the socket
# file behind) to the private bus, reaps it and takes it off the cleanup's list. The test keeps
# using its address: clients fail until private_bus_start starts a new bus there.
private_bus_stop() {
        local sig=${1:-TERM} pid=$FL_PRIVATE_BUS_PID

        [ -n "$pid" ] || fail "private_bus_stop: no private bus runs"
        kill -"$sig" "$pid"
        wait "$pid" 2>/dev/null || true
        forget_pid "$pid"
        FL_PRIVATE_BUS_PID=
        log "stopped the private dbus-daemon (pid $pid) with SIG$sig"
}

# ---------------------------------------------------------------- data --

# make_data_file FILE MIB: MIB MiB of random bytes in FILE, which every test user may read: FILE
# is made 0644 and $FL_TMP 0755.
make_data_file() {
        chmod 0755 "$FL_TMP"
        head -c $(($2 << 20)) /dev/urandom >"$1"
        chmod 0644 "$1"
}

# make_tree DIR: files of awkward sizes with random content, including a subdirectory tree.
# About 3.4 MiB.
make_tree() {
        local dir=$1 s

        mkdir -p "$dir/sub/deeper"
        for s in 0 1 511 512 4095 4096 4097 12345 65536 131073 1048583 2097151; do
                head -c "$s" /dev/urandom >"$dir/file-$s"
        done
        head -c 3000 /dev/urandom >"$dir/sub/small.bin"
        head -c 200000 /dev/urandom >"$dir/sub/deeper/medium.bin"
        printf 'hello from %s\n' "$FL_TEST_NAME" >"$dir/sub/deeper/hello.txt"
}

# check_tree MOUNTPOINT DIR: the same names below both, and every file's sha256 equal.
check_tree() {
        local mnt=$1 dir=$2 a b n

        a=$(cd "$dir" && find . -mindepth 1 \( -name lost+found -prune \) -o -print | sort)
        b=$(cd "$mnt" && find . -mindepth 1 \( -name lost+found -prune \) -o -print | sort)
        [ "$a" = "$b" ] ||
                fail "files in $mnt differ from $dir:"$'\n'"$(diff <(echo "$a") <(echo "$b") || true)"
        (cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$FL_TMP/expected.sha256"
        n=$(wc -l <"$FL_TMP/expected.sha256")
        [ "$n" -gt 0 ] || fail "check_tree: no files in $dir"
        (cd "$mnt" && sha256sum --quiet -c "$FL_TMP/expected.sha256") ||
                fail "content of files in $mnt differs from $dir"
        log "check_tree: all $n files in $mnt match $dir"
}

# mkext4 IMAGE SIZE DIR: an ext4 image of SIZE (e.g. 16M) filled with the files of DIR.
mkext4() {
        rm -f "$1"
        truncate -s "$2" "$1"
        mke2fs -F -q -t ext4 -E nodiscard -d "$3" "$1" >"$FL_TMP/mke2fs.log" 2>&1 ||
                { cat "$FL_TMP/mke2fs.log"; fail "mke2fs of $1 failed"; }
}

# mkgpt IMAGE DIR1 DIR2: a GPT image (27 MiB) with two partitions, made without any loop
# device: p1 "one" (ext4 with the files of DIR1, mke2fs -E offset=), p2 "two" (squashfs with the
# files of DIR2, written into place with dd; squashfs rather than vfat because not every kernel
# has vfat, while a read-only image is what squashfs is for).
# Sets FL_P1_OFFSET, FL_P1_SIZE, FL_P2_OFFSET, FL_P2_SIZE (bytes).
mkgpt() {
        local img=$1 d1=$2 d2=$3 json sq=$FL_TMP/p2.squashfs

        FL_P1_OFFSET=$((1 << 20))
        FL_P1_SIZE=$((12 << 20))
        FL_P2_OFFSET=$((13 << 20))
        FL_P2_SIZE=$((12 << 20))
        rm -f "$img" "$sq"
        truncate -s 27M "$img"
        sfdisk -q "$img" >"$FL_TMP/sfdisk.log" 2>&1 <<EOF || { cat "$FL_TMP/sfdisk.log"; fail "sfdisk failed"; }
label: gpt
start=$((FL_P1_OFFSET / 512)), size=$((FL_P1_SIZE / 512)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="one"
start=$((FL_P2_OFFSET / 512)), size=$((FL_P2_SIZE / 512)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="two"
EOF
        json=$(sfdisk -J "$img")
        assert_eq "$((FL_P1_OFFSET / 512)) $((FL_P1_SIZE / 512)) $((FL_P2_OFFSET / 512)) $((FL_P2_SIZE / 512))" \
                "$("$PYTHON" -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]["partitions"]; print(*[v for q in p for v in (q["start"], q["size"])])' <<<"$json")" \
                "partition table of $img"
        mke2fs -F -q -t ext4 -E "offset=$FL_P1_OFFSET,nodiscard" -d "$d1" "$img" "$((FL_P1_SIZE / 1024))k" \
                >"$FL_TMP/mke2fs.log" 2>&1 || { cat "$FL_TMP/mke2fs.log"; fail "mke2fs on partition 1 failed"; }
        mksquashfs "$d2" "$sq" -noappend -no-progress >"$FL_TMP/mksquashfs.log" 2>&1 ||
                { cat "$FL_TMP/mksquashfs.log"; fail "mksquashfs failed"; }
        [ "$(stat -c %s "$sq")" -le "$FL_P2_SIZE" ] || fail "the squashfs image does not fit partition 2"
        dd if="$sq" of="$img" bs=512 seek=$((FL_P2_OFFSET / 512)) conv=notrunc status=none
        # Neither file system may have touched the partition table or the image size.
        assert_eq "$json" "$(sfdisk -J "$img")" "partition table after making the file systems"
        assert_eq $((27 << 20)) "$(stat -c %s "$img")" "size of $img"
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# sha256_direct DEVICE: sha256 of the whole device read with O_DIRECT. Use it while a file
# system is mounted from the device: a mounted ext4 changes metadata blocks in the device's page
# cache (not on the device), so a buffered read then differs from the image.
sha256_direct() { dd if="$1" iflag=direct bs=1M status=none | sha256sum | cut -d' ' -f1; }

# sha256_head FILE BYTES
sha256_head() { head -c "$2" "$1" | sha256sum | cut -d' ' -f1; }

# ------------------------------------------------------------- cleanup --

# fl_sweep: removes what a test (or a killed daemon) left in the test run directory and in
# test temporary directories. Prints what it found; returns 1 if it found anything.
# fl_unmount_under PREFIX WHAT: unmounts every mount below PREFIX, deepest first (lazily if it is
# busy). Returns 1 if there was any.
fl_unmount_under() {
        local m found=0

        while read -r m; do
                [ -n "$m" ] || continue
                log "cleanup: unmounting leftover $2 $m"
                umount "$m" 2>/dev/null || umount -l "$m" || true
                found=1
        done < <(mounts_under "$1" | sort -r)
        [ "$found" -eq 0 ]
}

fl_sweep() {
        local found=0 dev back m

        fl_unmount_under "$FL_TMP_PREFIX" mount || found=1
        while read -r dev back; do
                [ -n "$dev" ] || continue
                log "cleanup: detaching leftover loop device $dev (backing file $back)"
                losetup -d "$dev" || true
                found=1
        done < <(loop_devices_backed_by_run_dir)
        fl_unmount_under "$FL_RUN_DIR/" "FUSE mount" || found=1
        while read -r m; do
                [ -n "$m" ] || continue
                log "cleanup: removing leftover $m"
                rm -rf --one-file-system "$m" || true
                found=1
        done < <(find "$FL_RUN_DIR" -mindepth 1 -maxdepth 1 2>/dev/null || true)
        # Temporary directories of earlier tests that were killed before their cleanup.
        for m in "$FL_TMP_PREFIX"*; do
                if [ ! -d "$m" ] || [ "$m" = "$FL_TMP" ]; then continue; fi
                [ -z "$(mounts_under "$m/")" ] || continue
                log "cleanup: removing leftover temporary directory $m"
                rm -rf --one-file-system "$m" || true
        done
        return "$found"
}

# A daemon that an earlier test started and that survived it (its test was killed): we know
# it by the pid and start time we recorded, and nothing else is ever ended here.
fl_stop_recorded_daemon() {
        local pid st

        [ -r "$FL_DAEMON_RECORD" ] || return 0
        read -r pid st <"$FL_DAEMON_RECORD" || true
        if [ -n "${pid:-}" ] && [ "$(starttime "$pid" 2>/dev/null)" = "$st" ]; then
                log "cleanup: an earlier test's fuseloopd (pid $pid) still runs, sending SIGTERM"
                kill -TERM "$pid" 2>/dev/null || true
                if ! wait_until 30 not_alive "$pid"; then
                        kill -KILL "$pid" 2>/dev/null || true
                        wait_until 5 not_alive "$pid" || true
                fi
        fi
        rm -f "$FL_DAEMON_RECORD"
}

# fl_no_processes_of USER: no process runs as USER.
fl_no_processes_of() { ! pgrep -u "$1" >/dev/null; }

# fl_remove_created: removes what $FL_CREATED_RECORD lists (files and loop devices, then users
# with the processes that still run as them, then groups) and the record itself. Each entry was made by a test, so
# was each process of a test user. Returns 1 (after a message) if something could not be removed;
# the record then keeps every entry for another try.
fl_remove_created() {
        local kind name pid rc=0 users=() groups=()

        [ -e "$FL_CREATED_RECORD" ] || return 0
        while read -r kind name; do
                [ -n "$name" ] || continue
                case $kind in
                file)
                        if [ -e "$name" ] || [ -L "$name" ]; then
                                if rm -f -- "$name"; then
                                        log "cleanup: removed $name"
                                else
                                        rc=1
                                fi
                        fi
                        ;;
                user) users+=("$name") ;;
                group) groups+=("$name") ;;
                loop)
                        # A loop device a test set up itself: detach it only while it still is
                        # the test's (its backing file in a test directory).
                        if [[ $(losetup -n -O BACK-FILE "$name" 2>/dev/null) == "$FL_TMP_PREFIX"* ]]; then
                                if losetup -d "$name"; then
                                        log "cleanup: detached $name"
                                else
                                        rc=1
                                fi
                        fi
                        ;;
                esac
        done <"$FL_CREATED_RECORD"
        for name in "${users[@]}"; do
                getent passwd "$name" >/dev/null || continue
                if ! fl_no_processes_of "$name"; then
                        log "cleanup: processes of test user $name still run:"$'\n'"$(pgrep -a -u "$name")"
                        for pid in $(pgrep -u "$name"); do kill -TERM "$pid" 2>/dev/null; done
                        if ! wait_until 10 fl_no_processes_of "$name"; then
                                for pid in $(pgrep -u "$name"); do kill -KILL "$pid" 2>/dev/null; done
                                wait_until 5 fl_no_processes_of "$name" || true
                        fi
                fi
                if userdel "$name"; then
                        log "cleanup: removed test user $name"
                else
                        log "cleanup: userdel $name failed"
                        rc=1
                fi
        done
        for name in "${groups[@]}"; do
                getent group "$name" >/dev/null || continue
                if groupdel "$name"; then
                        log "cleanup: removed test group $name"
                else
                        log "cleanup: groupdel $name failed"
                        rc=1
                fi
        done
        [ "$rc" -ne 0 ] || rm -f "$FL_CREATED_RECORD"
        return "$rc"
}

# The patterns that mark a sanitizer report (UBSan, ASan, LeakSanitizer).
FL_SANITIZER_RE='runtime error:|ERROR: AddressSanitizer|LeakSanitizer'

# fl_sanitizer_reports: prints each sanitizer report (from its first line on, 60 lines at most)
# found in the daemon log or another *.log file of this test. Returns 1 if it found any.
fl_sanitizer_reports() {
        local f n found=0 files=("$FL_DAEMON_LOG")

        for f in "$FL_TMP"/*.log; do
                [ "$f" = "$FL_DAEMON_LOG" ] || files+=("$f")
        done
        for f in "${files[@]}"; do
                [ -s "$f" ] || continue
                n=$(grep -n -m 1 -E -- "$FL_SANITIZER_RE" "$f" | cut -d: -f1) || true
                [ -n "$n" ] || continue
                printf '\n----- sanitizer report in %s (from line %s) -----\n' "$f" "$n"
                tail -n +"$n" "$f" | head -n 60
                printf -- '----- end of sanitizer report -----\n'
                found=1
        done
        [ "$found" -eq 0 ]
}

fl_cleanup() {
        local rc=$? i pid

        trap - ERR
        set +e
        stop_monitor
        for pid in "${FL_KILL_PIDS[@]}"; do
                kill -KILL "$pid" 2>/dev/null
                wait "$pid" 2>/dev/null
        done
        for pid in "${FL_PIDS[@]}"; do
                kill "$pid" 2>/dev/null
                wait "$pid" 2>/dev/null
        done
        for ((i = ${#FL_MOUNTS[@]} - 1; i >= 0; i--)); do
                [ -n "${FL_MOUNTS[$i]:-}" ] || continue
                mountpoint -q "${FL_MOUNTS[$i]}" || continue
                umount "${FL_MOUNTS[$i]}" 2>/dev/null || umount -l "${FL_MOUNTS[$i]}"
        done
        if [ -n "$FL_DAEMON_PID" ]; then
                if ! fl_stop_daemon TERM 30; then
                        echo "FAIL: fuseloopd did not stop on SIGTERM" >&2
                        [ "$rc" -ne 0 ] || rc=1
                elif [ "$FL_DAEMON_STATUS" -ne 0 ]; then
                        echo "FAIL: fuseloopd exited with status $FL_DAEMON_STATUS on SIGTERM" >&2
                        [ "$rc" -ne 0 ] || rc=1
                fi
        fi
        if ! fl_check_activation; then
                case $rc in 0 | 77) rc=1 ;; esac
        fi
        if ! fl_remove_created; then
                echo "FAIL: could not remove every test user, group or file that the test made (above)" >&2
                case $rc in 0 | 77) rc=1 ;; esac
        fi
        if fl_sweep; then
                :
        elif [ "$rc" -eq 0 ]; then
                echo "FAIL: the test left the above behind" >&2
                rc=1
        fi
        # After the daemon exited: LeakSanitizer reports at exit. Even a skipped test fails.
        if ! fl_sanitizer_reports; then
                echo "FAIL: sanitizer report (above)" >&2
                case $rc in 0 | 77) rc=1 ;; esac
        fi
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -s "$FL_DAEMON_LOG" ]; then
                printf '\n----- daemon log (%s, last 400 lines) -----\n' "$FL_DAEMON_LOG"
                tail -n 400 "$FL_DAEMON_LOG"
                printf -- '----- end of daemon log -----\n'
        fi
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -s "$FL_TMP/nbdkit.log" ]; then
                printf '\n----- nbdkit log (last 60 lines) -----\n'
                tail -n 60 "$FL_TMP/nbdkit.log"
                printf -- '----- end of nbdkit log -----\n'
        fi
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -s "${FL_MONITOR_LOG:-}" ]; then
                printf '\n----- signals seen -----\n'
                cat "$FL_MONITOR_LOG"
        fi
        if [ -n "${FUSELOOP_TEST_LOG_DIR:-}" ] && [ -s "$FL_DAEMON_LOG" ]; then
                mkdir -p "$FUSELOOP_TEST_LOG_DIR" &&
                        cp "$FL_DAEMON_LOG" "$FUSELOOP_TEST_LOG_DIR/$FL_TEST_NAME.fuseloopd.log"
        fi
        [ -z "$FL_TMP" ] || rm -rf --one-file-system "$FL_TMP"
        case $rc in
        0) echo "PASS: $FL_TEST_NAME" ;;
        77) ;;
        *) echo "FAIL: $FL_TEST_NAME (status $rc)" ;;
        esac
        exit "$rc"
}

# ---------------------------------------------------------------- init --

fl_init() {
        local t

        [ "$(id -u)" = 0 ] || skip "needs root"
        [ -c /dev/fuse ] || skip "no /dev/fuse"
        [ -c /dev/loop-control ] || skip "no /dev/loop-control"
        for t in busctl losetup blockdev mke2fs sfdisk mksquashfs findmnt mountpoint sha256sum udevadm \
                flock "$PYTHON"; do
                command -v "$t" >/dev/null || skip "$t is not installed"
        done
        "$PYTHON" -c 'import dbus, dbus.mainloop.glib; from gi.repository import GLib' 2>/dev/null ||
                skip "$PYTHON lacks python3-dbus or python3-gi"
        [ -x "$FUSELOOPD" ] || skip "no daemon at $FUSELOOPD"
        [ -x "$FUSELOOPCTL" ] || skip "no client at $FUSELOOPCTL"
        busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus GetId \
                >/dev/null 2>&1 || skip "no system bus (start it with tests/lib/services.sh start)"
        [ -e /usr/share/dbus-1/system.d/org.proxmox.FuseLoop1.conf ] ||
                [ -e /etc/dbus-1/system.d/org.proxmox.FuseLoop1.conf ] ||
                skip "bus policy org.proxmox.FuseLoop1.conf is not installed (meson install, then reload the bus)"
        busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
                NameHasOwner s org.freedesktop.PolicyKit1 2>/dev/null | grep -q 'b true' ||
                skip "polkitd does not run (tests/lib/services.sh start)"
        udevadm control --ping --timeout=2 >/dev/null 2>&1 ||
                skip "systemd-udevd does not run (tests/lib/services.sh start)"

        # fd 8 holds the global lock; every long-lived child is started with 8>&-.
        exec 8>"$FL_LOCK_FILE"
        if ! flock -n 8; then
                log "waiting for the test lock $FL_LOCK_FILE"
                flock -w 1200 8 || fail "could not take $FL_LOCK_FILE within 20 minutes"
        fi
        FL_TMP=$(mktemp -d "${FL_TMP_PREFIX}${FL_TEST_NAME}.XXXXXX")
        FL_DAEMON_LOG=$FL_TMP/fuseloopd.log
        : >"$FL_DAEMON_LOG"
        trap fl_cleanup EXIT
        trap 'exit 143' TERM
        trap 'exit 130' INT

        fl_stop_recorded_daemon
        fl_remove_created || log "cleanup: could not remove every leftover listed in $FL_CREATED_RECORD"
        # A fuseloopd that bus activation starts from now on was started because of this test.
        FL_TEST_STARTTIME=$(ticks_now)
        if has_owner; then
                t=$(owner_pid)
                fail "$FL_BUS is owned by pid $t ($(tr '\0' ' ' <"/proc/$t/cmdline" 2>/dev/null)), which no test started; stop it first"
        fi
        if fl_sweep; then
                log "cleanup: $FL_RUN_DIR and $FL_TMP_PREFIX* were clean"
        else
                log "cleanup: removed leftovers of an earlier run (above)"
        fi
        step "$FL_TEST_NAME (temporary directory $FL_TMP)"
}

fl_init

# ------------------------------------------------------------ fd store --

# The service manager's fd store, played by tests/lib/fdstore.py (see there): with it, a daemon
# that start_daemon starts gets NOTIFY_SOCKET pointing at the store, and gets back (LISTEN_FDS)
# every fd kept there, as systemd restarts a service. The store is stopped by the cleanup.
FL_FDSTORE_DIR=
FL_FDSTORE_PID=

# fdstore_start: starts the store in $FL_TMP/fdstore and makes start_daemon use it.
fdstore_start() {
        FL_FDSTORE_DIR=$FL_TMP/fdstore
        mkdir -p "$FL_FDSTORE_DIR"
        "$PYTHON" "$FL_LIB_DIR/fdstore.py" store --state "$FL_FDSTORE_DIR" >>"$FL_TMP/fdstore.log" 2>&1 8>&- &
        FL_FDSTORE_PID=$!
        FL_PIDS+=("$FL_FDSTORE_PID")
        wait_for 5 "the fd store" test -S "$FL_FDSTORE_DIR/control"
        FL_DAEMON_NOTIFY_SOCKET=$FL_FDSTORE_DIR/notify
        FL_DAEMON_WRAPPER=("$PYTHON" "$FL_LIB_DIR/fdstore.py" exec --state "$FL_FDSTORE_DIR" --)
}

# fdstore_names: the names of the fds in the store, one per fd, sorted.
fdstore_names() { cat "$FL_FDSTORE_DIR/names"; }

# fdstore_count: how many fds the store keeps.
fdstore_count() { grep -c . "$FL_FDSTORE_DIR/names" || true; }
fdstore_has() { [ "$(fdstore_count)" -eq "$1" ]; }

# wait_fdstore N: waits (10 s at most) until the store keeps exactly N fds.
wait_fdstore() { wait_for 10 "$1 fds in the fd store" fdstore_has "$1"; }

# ---------------------------------------------------------------- errfs --

# start_errfs BACKING BAD_OFFSET BAD_LENGTH [STALL_OFFSET STALL_LENGTH GATE]: mounts errfs (a
# source whose reads fail, or wait while GATE exists, in the given ranges; see tests/lib/errfs.c)
# on $FL_TMP/errfs, serving BACKING as $FL_TMP/errfs/data; its output goes to $FL_TMP/errfs.log,
# its pid to $ERRFS. Call it before anything else records a process: listed first, errfs is ended
# first by the cleanup, failing the reads it holds, before the cleanup waits for their readers.
start_errfs() {
        [ -x "${FUSELOOP_ERRFS:-}" ] || skip "no errfs helper (FUSELOOP_ERRFS)"
        mkdir -p "$FL_TMP/errfs"
        "$FUSELOOP_ERRFS" "$1" "$2" "$3" "$FL_TMP/errfs" "${@:4}" >"$FL_TMP/errfs.log" 2>&1 8>&- &
        ERRFS=$!
        FL_PIDS+=("$ERRFS")
        FL_MOUNTS+=("$FL_TMP/errfs")
        wait_for 10 "errfs to be mounted" mountpoint -q "$FL_TMP/errfs"
}

# ---------------------------------------------------------------- nbdkit --

# start_nbdkit VAR SOCKET NBDKIT-ARGS...: runs nbdkit (a real NBD server) in the foreground on the
# Unix socket SOCKET and stores its pid in VAR; the cleanup ends it with SIGKILL (FL_KILL_PIDS).
# Its output goes to $FL_TMP/nbdkit.log.
start_nbdkit() {
        local _fl_var=$1 _fl_sock=$2 _fl_pid

        shift 2
        command -v nbdkit >/dev/null || skip "nbdkit is not installed"
        rm -f "$_fl_sock"
        nbdkit -f -U "$_fl_sock" "$@" >>"$FL_TMP/nbdkit.log" 2>&1 8>&- &
        _fl_pid=$!
        FL_KILL_PIDS+=("$_fl_pid")
        printf -v "$_fl_var" %s "$_fl_pid"
        wait_for 10 "nbdkit to listen on $_fl_sock" test -S "$_fl_sock"
        log "nbdkit $* on $_fl_sock (pid $_fl_pid)"
}

# stop_nbdkit PID: ends an nbdkit of this test at once (as a crash would) and reaps it.
stop_nbdkit() {
        local keep=() p

        kill -KILL "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
        for p in "${FL_KILL_PIDS[@]}"; do
                [ "$p" = "$1" ] || keep+=("$p")
        done
        FL_KILL_PIDS=("${keep[@]}")
}
