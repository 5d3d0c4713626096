#!/bin/bash
# run.sh - the project's test command (run as root on a fresh Debian 12 machine):
#
#   installs the build and test packages, builds and installs fuseloop (so the bus policy and
#   polkit actions are in place), builds it a second time with AddressSanitizer and
#   UndefinedBehaviorSanitizer (not installed), starts the system bus, polkitd and udevd if they
#   do not run (tests/lib/services.sh), runs the unit suite of both builds (and of the plain
#   build once more under valgrind) and then the integration suite of both builds, stops the
#   services this run started (never those that already ran), and ends with one line
#   "N passed, N failed[, N skipped]" that counts all these runs. A test whose output contains a
#   sanitizer report counts as failed even if it passed.
#
# Environment:
#   FUSELOOP_BUILD_DIR=DIR   build directory (default: build in the source root)
#   FUSELOOP_SANITIZE_BUILD_DIR=DIR  build directory of the sanitizer pass (default: DIR-sanitize)
#   FUSELOOP_SANITIZE=0      skip the sanitizer pass
#   FUSELOOP_VALGRIND=0      skip the unit suite under valgrind (memcheck)
#   FUSELOOP_NO_INSTALL=1    never call apt-get (fail if a package is missing)
#   FUSELOOP_TEST_STRICT=0   let integration tests skip (exit 77) on a missing prerequisite;
#                            by default this script makes that a failure, since it installed
#                            and started everything itself
#   FUSELOOP_FUZZ=0          skip the fuzz stage: a clang build with -Dfuzz=true (default build
#                            directory DIR-fuzz, or FUSELOOP_FUZZ_BUILD_DIR) whose libFuzzer targets
#                            (fuzz/) each run FUSELOOP_FUZZ_SECONDS (default 20) seconds, each
#                            counted as one test; a crash prints the input that caused it
#
# One test by hand (after one run of this script, with the services running):
#   meson test -C build --suite integration test-map-ext4 --print-errorlogs
#   meson test -C build-sanitize --suite integration test-map-ext4 --print-errorlogs
#
# Exit status: 0 if everything passed, 1 otherwise.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$SRC"
BUILD=${FUSELOOP_BUILD_DIR:-$SRC/build}
case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
SAN_BUILD=${FUSELOOP_SANITIZE_BUILD_DIR:-$BUILD-sanitize}
case $SAN_BUILD in /*) ;; *) SAN_BUILD=$SRC/$SAN_BUILD ;; esac
SANITIZE_OPTIONS=('-Db_sanitize=address,undefined' -Db_lundef=false)
SERVICES=$SRC/tests/lib/services.sh
PYTHON=/usr/bin/python3

PKGS=(meson ninja-build pkg-config gcc libc6-dev libfuse3-dev fuse3 libsystemd-dev libudev-dev
      liburing-dev libblkid-dev libjson-c-dev libnbd-dev nbdkit udev systemd dbus polkitd util-linux fdisk e2fsprogs dosfstools
      squashfs-tools python3 python3-dbus python3-gi gir1.2-glib-2.0 valgrind
      clang libclang-rt-14-dev scdoc man-db groff-base bsdextrautils)

# The unit suite of the plain build runs a second time under memcheck: an invalid access, a use
# of uninitialised memory or a leak (definite, indirect or possible) fails the test (status 99,
# which meson reports as ERROR).
# shellcheck disable=SC2054 # the commas belong to valgrind's options
VALGRIND=(valgrind --tool=memcheck --quiet --error-exitcode=99 --leak-check=full
          --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible
          --track-origins=yes --num-callers=30)

say() { printf '\n### %s\n' "$*"; }

# ------------------------------------------------------------ packages --

missing_pkgs() {
        local p

        for p in "$@"; do
                dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || echo "$p"
        done
}

install_pkgs() {
        local missing i log

        missing=$(missing_pkgs "${PKGS[@]}" | tr '\n' ' ')
        if [ -z "${missing// /}" ]; then
                say "all packages are installed"
                return 0
        fi
        [ "${FUSELOOP_NO_INSTALL:-0}" != 1 ] || { echo "missing packages: $missing" >&2; exit 1; }
        say "installing: $missing"
        log=$(mktemp)
        # apt-get update does not wait for the lists lock: retry while another apt holds it.
        for i in $(seq 1 20); do
                if apt-get update -q -o DPkg::Lock::Timeout=300 >"$log" 2>&1; then
                        break
                fi
                if [ "$i" -eq 20 ]; then
                        cat "$log" >&2
                        echo "apt-get update failed" >&2
                        exit 1
                fi
                sleep 10
        done
        for i in 1 2 3; do
                # shellcheck disable=SC2086
                if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                        -o DPkg::Lock::Timeout=600 $missing >>"$log" 2>&1; then
                        break
                fi
                if [ "$i" -eq 3 ]; then
                        tail -n 40 "$log" >&2
                        echo "apt-get install failed" >&2
                        exit 1
                fi
                sleep 10
        done
        rm -f "$log"
}

# ------------------------------------------------------------- summary --

# count_results BUILD LOGBASE: prints "passed failed skipped" from meson's JSON test log. A test
# that meson counted as passed or skipped but whose output holds a sanitizer report is failed
# (named on stderr).
count_results() {
        local json=$1/meson-logs/$2.json

        [ -s "$json" ] || { echo "0 0 0"; return; }
        "$PYTHON" - "$json" <<'PY'
import json, re, sys
report = re.compile(r"runtime error:|ERROR: AddressSanitizer|LeakSanitizer")
p = f = s = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    t = json.loads(line)
    r = t.get("result", "")
    if r in ("OK", "EXPECTEDFAIL", "SKIP") and report.search(t.get("stdout") or ""):
        print(f"{t.get('name')}: {r}, but its output contains a sanitizer report: counted as failed",
              file=sys.stderr)
        r = "FAIL"
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
    else:
        f += 1
print(p, f, s)
PY
}

PASSED=0
FAILED=0
SKIPPED=0
STATUS=0

summary() {
        local line="$PASSED passed, $FAILED failed"

        [ "$SKIPPED" -eq 0 ] || line+=", $SKIPPED skipped"
        echo
        echo "$line"
}

# run_suite BUILD SUITE LABEL [MESON-TEST-OPTION...]: runs one suite of one build and adds its
# results to the totals.
run_suite() {
        local build=$1 suite=$2 label=$3 log=testlog-$2 o rc=0 p f s

        shift 3
        # meson names the logs of a run with --wrap=PROGRAM after the program too
        # (testlog-unit-valgrind), so they do not overwrite those of the run without it.
        for o; do
                case $o in --wrap=*) o=${o#--wrap=}; o=${o%% *}; log+=-${o##*/} ;; esac
        done
        say "$suite tests, $label (meson test -C $build --suite $suite${*:+ $*})"
        rm -f "$build/meson-logs/$log.json"
        meson test -C "$build" --suite "$suite" --no-rebuild --print-errorlogs \
                --logbase "testlog-$suite" "$@" || rc=$?
        read -r p f s <<<"$(count_results "$build" "$log")"
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
                # meson itself failed (no test ran or the log is missing): count that.
                echo "meson test -C $build --suite $suite exited with $rc"
                f=1
        fi
        if [ "$s" -eq 0 ]; then
                echo "$suite tests, $label: $p passed, $f failed"
        else
                echo "$suite tests, $label: $p passed, $f failed, $s skipped"
        fi
        PASSED=$((PASSED + p))
        FAILED=$((FAILED + f))
        SKIPPED=$((SKIPPED + s))
        [ "$rc" -eq 0 ] && [ "$f" -eq 0 ] || STATUS=1
}

# run_fuzz: builds the fuzz targets with clang (in BUILD-fuzz or FUSELOOP_FUZZ_BUILD_DIR), runs
# each for a bounded time (suite 'fuzz', one test per target) and prints how many inputs each ran.
run_fuzz() {
        local dir=${FUSELOOP_FUZZ_BUILD_DIR:-$BUILD-fuzz}

        case $dir in /*) ;; *) dir=$SRC/$dir ;; esac
        export FUSELOOP_FUZZ_SECONDS=${FUSELOOP_FUZZ_SECONDS:-20}
        say "fuzz build in $dir (clang, -Dfuzz=true; not installed)"
        if ! CC=clang build "$dir" -Dfuzz=true; then
                echo "fuzz build failed: counted as one failure"
                FAILED=$((FAILED + 1))
                STATUS=1
                return 0
        fi
        run_suite "$dir" fuzz "libFuzzer, ${FUSELOOP_FUZZ_SECONDS} s per target"
        grep -h '^fuzz-stats:' "$dir/meson-logs/testlog-fuzz.txt" 2>/dev/null || true
}

# build DIR [MESON-OPTION...]: configures (or reconfigures) and compiles DIR with prefix /usr.
build() {
        local dir=$1

        shift
        if [ -f "$dir/build.ninja" ]; then
                meson setup --reconfigure "$dir" --prefix=/usr "$@" || return 1
        else
                meson setup "$dir" --prefix=/usr "$@" || return 1
        fi
        meson compile -C "$dir"
}

# ---------------------------------------------------------------- main --

[ "$(id -u)" = 0 ] || { echo "tests/run.sh must run as root" >&2; exit 1; }
# Here a missing prerequisite is a failure: this script installed and started everything.
export FUSELOOP_TEST_STRICT=${FUSELOOP_TEST_STRICT:-1}
install_pkgs

say "build in $BUILD"
if ! build "$BUILD"; then
        echo "build failed"
        FAILED=1
        summary
        exit 1
fi
meson install -C "$BUILD" --quiet

SANITIZE=0
if [ "${FUSELOOP_SANITIZE:-1}" != 0 ]; then
        say "sanitizer build in $SAN_BUILD (${SANITIZE_OPTIONS[*]}; not installed)"
        if build "$SAN_BUILD" "${SANITIZE_OPTIONS[@]}"; then
                SANITIZE=1
        else
                echo "sanitizer build failed: counted as one failure, its suites do not run"
                FAILED=$((FAILED + 1))
                STATUS=1
        fi
fi

run_suite "$BUILD" unit "plain build"
[ "${FUSELOOP_VALGRIND:-1}" = 0 ] ||
        run_suite "$BUILD" unit "plain build under valgrind" --wrap="${VALGRIND[*]}" --timeout-multiplier 5
[ "$SANITIZE" -eq 0 ] || run_suite "$SAN_BUILD" unit "sanitizer build (ASan+UBSan)"
[ "${FUSELOOP_FUZZ:-1}" = 0 ] || run_fuzz

say "services"
# services.sh stops only what its "start" started. A state directory of this run's own makes
# that "what this run started": services that already ran stay, also those that an earlier
# "services.sh start" (default state directory) left running for someone else on the machine.
SERVICES_STATE=$(mktemp -d /run/fuseloop-services.run.XXXXXX)
export FUSELOOP_SERVICES_STATE=$SERVICES_STATE
trap 'FUSELOOP_SERVICES_NO_INSTALL=1 bash "$SERVICES" stop || true; rm -rf "$SERVICES_STATE"' EXIT
bash "$SERVICES" start
# The bus policy and polkit action files were just installed.
bash "$SERVICES" reload

run_suite "$BUILD" integration "plain build"
[ "$SANITIZE" -eq 0 ] || run_suite "$SAN_BUILD" integration "sanitizer build (ASan+UBSan)"
if [ "$STATUS" -ne 0 ]; then
        bash "$SERVICES" logs || true
fi
say "stopping the services this run started"
trap - EXIT
FUSELOOP_SERVICES_NO_INSTALL=1 bash "$SERVICES" stop || true
rm -rf "$SERVICES_STATE"

summary
exit "$STATUS"
