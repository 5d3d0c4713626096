#!/bin/bash
# run.sh - the project's test command (run as root on a fresh Debian 12 machine):
#
#   installs the build and test packages, builds and installs fuseloop (so the bus policy and
#   polkit actions are in place), starts the system bus, polkitd and udevd if they do not run
#   (tests/lib/services.sh), runs the unit suite and then the integration suite, stops the
#   services it started, and ends with one line "N passed, N failed[, N skipped]".
#
# Environment:
#   FUSELOOP_BUILD_DIR=DIR   build directory (default: build in the source root)
#   FUSELOOP_NO_INSTALL=1    never call apt-get (fail if a package is missing)
#   FUSELOOP_TEST_STRICT=0   let integration tests skip (exit 77) on a missing prerequisite;
#                            by default this script makes that a failure, since it installed
#                            and started everything itself
#
# One test by hand (after one run of this script, with the services running):
#   meson test -C build --suite integration test-map-ext4 --print-errorlogs
#
# Exit status: 0 if everything passed, 1 otherwise.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$SRC"
BUILD=${FUSELOOP_BUILD_DIR:-$SRC/build}
case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
SERVICES=$SRC/tests/lib/services.sh
PYTHON=/usr/bin/python3

PKGS=(meson ninja-build pkg-config gcc libc6-dev libfuse3-dev fuse3 libsystemd-dev libudev-dev
      liburing-dev libblkid-dev udev systemd dbus polkitd util-linux fdisk e2fsprogs dosfstools
      squashfs-tools python3 python3-dbus python3-gi gir1.2-glib-2.0)

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

# count_results LOGBASE: prints "passed failed skipped" from meson's JSON test log.
count_results() {
        local json=$BUILD/meson-logs/$1.json

        [ -s "$json" ] || { echo "0 0 0"; return; }
        "$PYTHON" - "$json" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line).get("result", "")
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

run_suite() { # SUITE
        local rc=0 p f s

        say "meson test --suite $1"
        rm -f "$BUILD/meson-logs/testlog-$1.json"
        meson test -C "$BUILD" --suite "$1" --no-rebuild --print-errorlogs \
                --logbase "testlog-$1" || rc=$?
        read -r p f s <<<"$(count_results "testlog-$1")"
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
                # meson itself failed (no test ran or the log is missing): count that.
                echo "meson test --suite $1 exited with $rc"
                f=1
        fi
        PASSED=$((PASSED + p))
        FAILED=$((FAILED + f))
        SKIPPED=$((SKIPPED + s))
        [ "$rc" -eq 0 ] || STATUS=1
}

# ---------------------------------------------------------------- main --

[ "$(id -u)" = 0 ] || { echo "tests/run.sh must run as root" >&2; exit 1; }
# Here a missing prerequisite is a failure: this script installed and started everything.
export FUSELOOP_TEST_STRICT=${FUSELOOP_TEST_STRICT:-1}
install_pkgs

say "build in $BUILD"
if [ -f "$BUILD/build.ninja" ]; then
        SETUP=(meson setup --reconfigure "$BUILD" --prefix=/usr)
else
        SETUP=(meson setup "$BUILD" --prefix=/usr)
fi
if ! "${SETUP[@]}" || ! meson compile -C "$BUILD"; then
        echo "build failed"
        FAILED=1
        summary
        exit 1
fi
meson install -C "$BUILD" --quiet

say "unit tests"
run_suite unit

say "services"
# services.sh stops only what its "start" started; services that already ran stay.
trap 'FUSELOOP_SERVICES_NO_INSTALL=1 bash "$SERVICES" stop || true' EXIT
bash "$SERVICES" start
# The bus policy and polkit action files were just installed.
bash "$SERVICES" reload

run_suite integration
if [ "$STATUS" -ne 0 ]; then
        bash "$SERVICES" logs || true
fi
say "stopping the services this run started"
trap - EXIT
FUSELOOP_SERVICES_NO_INSTALL=1 bash "$SERVICES" stop || true

summary
exit "$STATUS"
