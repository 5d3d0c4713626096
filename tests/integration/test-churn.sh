#!/bin/bash
# test-churn: no leaks over many map/unmap cycles. After a warm-up, the daemon's open fds,
# threads, loop devices backed by the run directory, mounts under it, files in it and bus objects
# are recorded; then CYCLES cycles mix successful maps (fuseloopctl with an fd, MapURI through
# busctl, Map through python-dbus with offset and size, partition scans of an sfdisk image) with
# failed ones (bad options, a directory as source, an offset past the end, a missing path, a
# duplicate name) and unmaps through fuseloopctl, busctl and the mapping object; the content is
# checked by sha256 every few cycles. Afterwards every count must equal the baseline exactly and
# the resident memory must stay within the bound explained at RSS_SLACK_KIB below.
#
# Environment: FUSELOOP_CHURN_CYCLES=N (default 500) to run more or fewer cycles by hand.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

CYCLES=${FUSELOOP_CHURN_CYCLES:-500}
# One cycle of each kind: the io_uring, the udev monitor's buffers, libfuse's buffers, sd-bus's
# caches and the worker threads' malloc arenas exist before the baseline is taken.
WARMUP=10

# Memory (VmRSS, and Private_Dirty, the daemon's own written pages: heap, stacks, data) is
# compared only for a build without AddressSanitizer. glibc malloc does not give every freed page
# back to the kernel (the heap top is trimmed only above M_TRIM_THRESHOLD, fragmented arenas of
# the worker threads keep their pages, sd-bus and libudev keep caches that grow to a high-water
# mark), so memory after many cycles is not byte-for-byte what it was after the warm-up; measured
# here: 10 to 210 KiB more after 500 cycles, nearly all of it within the first 150. A leak
# scales with the number of cycles, this noise does not: each may be at most RSS_SLACK_KIB above
# the baseline after all cycles, and the second half of the cycles may add at most
# RSS_HALF_SLACK_KIB to what the first half left, which a leak of 3 KiB per cycle (a bus message
# and a few strings) already breaks. Under ASan freed memory sits in the quarantine (256 MiB by
# default) and the shadow memory grows with it, so RSS there says nothing about leaks;
# LeakSanitizer checks the daemon's heap when it exits instead (lib.sh fails the test on its
# report). Fds, threads, loop devices, mounts, files and bus objects are compared in both builds.
RSS_SLACK_KIB=4096
RSS_HALF_SLACK_KIB=512

SMALL=$FL_TMP/small.bin
GPT=$FL_TMP/gpt.img
SMALL_SIZE=$((4 << 20))
make_data_file "$SMALL" 4
mkdir "$FL_TMP/dir"

# A GPT image with two partitions and random data in them, made without a loop device.
head -c $((8 << 20)) /dev/urandom >"$GPT"
sfdisk -q "$GPT" >"$FL_TMP/sfdisk.log" 2>&1 <<EOF || { cat "$FL_TMP/sfdisk.log"; fail "sfdisk failed"; }
label: gpt
start=2048, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="one"
start=6144, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="two"
EOF
SHA_SMALL=$(sha256_of "$SMALL")
SHA_GPT=$(sha256_of "$GPT")
# Python-dbus maps this part of the small file: 1 MiB from 512 KiB on.
PART_OFFSET=$((512 << 10))
PART_SIZE=$((1 << 20))
SHA_PART=$(dd if="$SMALL" iflag=skip_bytes,count_bytes skip="$PART_OFFSET" count="$PART_SIZE" bs=64K status=none |
        sha256sum | cut -d' ' -f1)

# (Not "ldd | grep -q": grep quits at the first match, and with pipefail ldd's SIGPIPE would make
# the pipeline fail.)
case $(ldd "$FUSELOOPD" 2>/dev/null) in
*libasan*) SANITIZED=1 ;;
*) SANITIZED=0 ;;
esac

start_daemon
PID=$FL_DAEMON_PID
# The daemon runs with LeakSanitizer (ASAN_OPTIONS as the test got it). Its clients here do not:
# at ASan's exit each fuseloopctl call would spend some 50 ms in the leak check, which doubles
# the run time of a cycle in the sanitizer build; every other test runs the client with it.
[ "$SANITIZED" -eq 0 ] || export ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0

# ------------------------------------------------------------ measures --

fd_count() { find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }
fd_list() {
        local f

        for f in /proc/"$PID"/fd/*; do
                printf '%s -> %s\n' "${f##*/}" "$(readlink "$f" 2>/dev/null)"
        done | sort -n
}
rss_kib() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$PID/status"; }
dirty_kib() { awk '$1 == "Private_Dirty:" { print $2 }' "/proc/$PID/smaps_rollup"; }
# Threads of the daemon, without io_uring's io-wq workers (iou-wrk-*): the kernel starts those
# on demand and ends them after some idle seconds, so their number depends on timing, not on
# what the daemon holds. A job thread is detached and exits right after it posted its result,
# so the count is waited for (threads_settled) rather than read once.
thread_count() {
        local n=0 t c

        for t in /proc/"$PID"/task/*; do
                c=$(cat "$t/comm" 2>/dev/null) || continue
                [[ $c == iou-* ]] || n=$((n + 1))
        done
        echo "$n"
}
threads_settled() { [ "$(thread_count)" -le "$BASE_THREADS" ]; }
fds_settled() { [ "$(fd_count)" -le "$BASE_FDS" ]; }
bus_objects() { busctl_ tree --list "$FL_BUS" | sort; }
managed_objects() { flbus managed-objects | sort; }
run_dir_files() { find "$FL_RUN_DIR" -mindepth 1 2>/dev/null | sort; }

# snapshot FILE: everything that must come back to the baseline, one labelled line each.
snapshot() {
        {
                echo "fds: $(fd_count)"
                echo "threads: $(thread_count)"
                loop_devices_backed_by_run_dir | sed 's/^/loop: /'
                mounts_under "$FL_RUN_DIR/" | sed 's/^/mount: /'
                run_dir_files | sed 's/^/file: /'
                bus_objects | sed 's/^/object: /'
                managed_objects | sed 's/^/managed: /'
                list_names | sed 's/^/listed: /'
        } >"$1"
}

# --------------------------------------------------------------- cycles --

FAILED_MAPS=0
N_CTL=0
N_URI=0
N_FD=0
N_PART=0

# map_fails_with ERROR COMMAND...: a map that must fail with the D-Bus error ERROR (flbus.py
# prints the error's name), counted.
map_fails_with() {
        expect_error "$@"
        FAILED_MAPS=$((FAILED_MAPS + 1))
}

# map_fails_like REGEX COMMAND...: the same for fuseloopctl and busctl, which print only the
# error's message.
map_fails_like() {
        expect_failure "$@"
        FAILED_MAPS=$((FAILED_MAPS + 1))
}

busctl_unmap() { busctl_ call "$FL_BUS" "$FL_PATH" "$FL_IFACE" Unmap 'sa{sv}' "$1" 0 >/dev/null; }

verify() { # DEVICE SHA256 WHAT
        assert_eq "$2" "$(sha256_direct "$1")" "content of $1 ($3)"
}

# cycle I: one map/unmap cycle; which kind of cycle depends on I (every kind comes up every ten
# cycles), and so does the name. The content is read back (O_DIRECT, through loop device, FUSE
# and io_uring) in two of every ten cycles and in every third cycle of each other successful kind:
# reading every cycle would double the run time and test nothing new about leaks.
cycle() {
        local i=$1 name="churn-$(($1 % 7))" dev out

        case $((i % 10)) in
        0 | 1 | 2)
                # fuseloopctl with an fd; the last of these checks the content.
                dev=$(ctl_map "$name" "$SMALL")
                [ $((i % 10)) -ne 2 ] || verify "$dev" "$SHA_SMALL" "fuseloopctl map"
                ctl unmap "$name" >/dev/null
                N_CTL=$((N_CTL + 1))
                ;;
        3)
                # MapURI and Unmap through busctl.
                dev=$(busctl_map_uri "$name" "file://$SMALL")
                [ "$((i % 30))" -ne 3 ] || verify "$dev" "$SHA_SMALL" "MapURI"
                busctl_unmap "$name"
                N_URI=$((N_URI + 1))
                ;;
        4)
                # Partition scan: both partitions are there when map returns.
                dev=$(ctl_map --partscan "$name" "$GPT")
                is_block "${dev}p1" || fail "${dev}p1 missing right after map --partscan returned"
                is_block "${dev}p2" || fail "${dev}p2 missing right after map --partscan returned"
                [ "$((i % 30))" -ne 4 ] || verify "$dev" "$SHA_GPT" "map --partscan"
                ctl unmap "$dev" >/dev/null
                N_PART=$((N_PART + 1))
                ;;
        5)
                # A bad option value, an unknown option and a bad name: refused while the call is
                # checked, before any mapping exists.
                map_fails_with InvalidOption flbus map-uri "$name" "$SMALL" sector-size=u:3000
                map_fails_like "unknown option.*no-such-option" busctl_ call "$FL_BUS" "$FL_PATH" "$FL_IFACE" \
                        MapURI 'ssa{sv}' "$name" "$SMALL" 1 no-such-option b true
                map_fails_like "invalid mapping name" ctl map ".$name" "$SMALL"
                ;;
        6)
                # Bad sources: a directory passed as fd (by fuseloopctl and by python-dbus), a path
                # that does not exist, an offset at the end of the source, a size past it. These
                # fail in or after the job that opens the source, once the mapping exists.
                map_fails_like "directory" ctl map "$name" "$FL_TMP/dir"
                map_fails_with InvalidSource flbus map-fd "$name" "$FL_TMP/dir" --open dir
                map_fails_like "cannot open" busctl_ call "$FL_BUS" "$FL_PATH" "$FL_IFACE" MapURI 'ssa{sv}' \
                        "$name" "$FL_TMP/missing-$i" 0
                map_fails_like "offset" ctl map --offset "$SMALL_SIZE" "$name" "$SMALL"
                map_fails_with InvalidOption flbus map-fd "$name" "$SMALL" offset=t:4096 size=t:"$SMALL_SIZE"
                ;;
        7)
                # A duplicate name, through both methods, while the first mapping is active.
                dev=$(ctl_map "$name" "$SMALL")
                map_fails_like "already" ctl map "$name" "$SMALL"
                map_fails_with AlreadyMapped flbus map-uri "$name" "$SMALL"
                [ "$((i % 30))" -ne 7 ] || verify "$dev" "$SHA_SMALL" "map beside a refused duplicate"
                ctl unmap "$name" >/dev/null
                expect_error NotFound flbus unmap "$name"
                N_CTL=$((N_CTL + 1))
                ;;
        8)
                # Map with an fd from python-dbus, with offset and size; Unmap on the object.
                out=$(flbus map-fd "$name" "$SMALL" offset=t:"$PART_OFFSET" size=t:"$PART_SIZE") ||
                        fail "Map of '$name' failed: $out"
                dev=${out#* }
                [ "$((i % 30))" -ne 8 ] || verify "$dev" "$SHA_PART" "Map with offset and size"
                flbus unmap-object "$name" >/dev/null
                N_FD=$((N_FD + 1))
                ;;
        9)
                # Lazy unmap of an idle device, through fuseloopctl with the device name.
                dev=$(ctl_map "$name" "$SMALL")
                verify "$dev" "$SHA_SMALL" "map before a lazy unmap"
                ctl unmap --lazy "$dev" >/dev/null
                N_CTL=$((N_CTL + 1))
                ;;
        esac
}

# measure LABEL: waits until job threads and fds of jobs in flight are gone, then prints and sets
# M_FDS, M_THREADS, M_RSS, M_DIRTY.
measure() {
        wait_until 10 threads_settled || true
        wait_until 10 fds_settled || true
        M_FDS=$(fd_count)
        M_THREADS=$(thread_count)
        M_RSS=$(rss_kib)
        M_DIRTY=$(dirty_kib)
        log "$1: fds $M_FDS, threads $M_THREADS, RSS $M_RSS KiB, Private_Dirty $M_DIRTY KiB"
}

step "warm-up: $WARMUP cycles"
for ((i = 0; i < WARMUP; i++)); do
        cycle "$i"
done
assert_nothing_mapped

step "baseline"
BASE_THREADS=$(thread_count)
BASE_FDS=$(fd_count)
measure baseline
BASE_RSS=$M_RSS
BASE_DIRTY=$M_DIRTY
snapshot "$FL_TMP/baseline"
fd_list >"$FL_TMP/baseline.fds"
cat "$FL_TMP/baseline"

step "$CYCLES cycles"
START_MS=$(now_ms)
FAILED_MAPS=0
N_CTL=0 N_URI=0 N_FD=0 N_PART=0
HALF=$((CYCLES / 2))
for ((i = 0; i < CYCLES; i++)); do
        cycle "$i"
        if [ "$i" -eq $((HALF - 1)) ]; then
                measure "after $HALF cycles"
                HALF_RSS=$M_RSS
                HALF_DIRTY=$M_DIRTY
                if [ "$M_FDS" != "$BASE_FDS" ]; then
                        diff "$FL_TMP/baseline.fds" <(fd_list) || true
                        fail "the daemon has $M_FDS fds open after $HALF cycles, $BASE_FDS before (diff above)"
                fi
        fi
        if [ $((i % 50)) -eq 49 ]; then
                log "$((i + 1)) cycles, $(($(now_ms) - START_MS)) ms, fds $(fd_count), RSS $(rss_kib) KiB"
        fi
done
END_MS=$(now_ms)
SECS=$(((END_MS - START_MS) / 1000)).$(printf '%03d' $(((END_MS - START_MS) % 1000)))

step "compare with the baseline"
measure "after $CYCLES cycles"
snapshot "$FL_TMP/after"
fd_list >"$FL_TMP/after.fds"
SUMMARY="churn: $CYCLES cycles ($N_CTL fuseloopctl, $N_URI MapURI, $N_FD Map via python-dbus, $N_PART partscan; $FAILED_MAPS failed maps) in $SECS s; fds $BASE_FDS -> $M_FDS; RSS $BASE_RSS -> $M_RSS KiB (after $HALF cycles: $HALF_RSS KiB); Private_Dirty $BASE_DIRTY -> $M_DIRTY KiB (after $HALF cycles: $HALF_DIRTY KiB); threads $BASE_THREADS -> $M_THREADS$([ "$SANITIZED" -eq 0 ] || echo "; ASan build: memory not compared")"
echo "$SUMMARY"
if ! cmp -s "$FL_TMP/baseline" "$FL_TMP/after"; then
        diff "$FL_TMP/baseline" "$FL_TMP/after" || true
        diff "$FL_TMP/baseline.fds" "$FL_TMP/after.fds" || true
        fail "the daemon did not return to its baseline after $CYCLES cycles (diff above)"
fi
assert_nothing_mapped
# check_growth WHAT BASE HALF END
check_growth() {
        [ "$(($4 - $2))" -le "$RSS_SLACK_KIB" ] ||
                fail "$1 grew by $(($4 - $2)) KiB over $CYCLES cycles (bound $RSS_SLACK_KIB KiB)"
        [ "$(($4 - $3))" -le "$RSS_HALF_SLACK_KIB" ] ||
                fail "$1 grew by $(($4 - $3)) KiB in the second $((CYCLES - HALF)) cycles (bound $RSS_HALF_SLACK_KIB KiB): it grows with the cycles"
}
if [ "$SANITIZED" -eq 0 ]; then
        check_growth RSS "$BASE_RSS" "$HALF_RSS" "$M_RSS"
        check_growth Private_Dirty "$BASE_DIRTY" "$HALF_DIRTY" "$M_DIRTY"
fi
