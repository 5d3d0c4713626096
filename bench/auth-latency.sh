#!/bin/bash
# auth-latency.sh - what authorization and activation cost a client, side by side:
#
#   map/unmap as root          no polkit (root is allowed without asking)
#   map/unmap as a user        polkit asked (a rules file grants the user's group), owner unmaps
#   map refused                a user polkit says no to: time to the AccessDenied
#   list, daemon running       one round trip, for reference
#   list, no daemon            bus activation: dbus-daemon's launch helper starts the installed
#                              /usr/sbin/fuseloopd, which answers once it owns the name
#
# Every client runs through "runuser -u USER" (root too), so process start-up costs the same in
# each row. Prints median, minimum and maximum in milliseconds and the ratio of each median to
# the root map's.
#
# Usage (as root, with the services running: bash tests/lib/services.sh start):
#   bash bench/auth-latency.sh [RUNS]        (default 20; the activation row runs RUNS/4 times)
# Environment: FUSELOOP_BUILD (default ./build), the build whose fuseloopd and fuseloopctl run.
#
# It makes a user, a group and a polkit rules file of its own and removes them on exit; it runs
# its own daemon with the run directory /run/fuseloopd-bench, and takes the test lock so that it
# never runs beside the test suite.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FUSELOOP_BUILD:-$SRC/build}
RUNS=${1:-20}
BUS=org.proxmox.FuseLoop1
RUN_DIR=/run/fuseloopd-bench
RULES_DIR=/etc/polkit-1/rules.d
export LC_ALL=C DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket

die() { echo "auth-latency: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"
[ -x "$BUILD/fuseloopd" ] && [ -x "$BUILD/fuseloopctl" ] || die "no build in $BUILD (meson compile -C build)"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number"

exec 9>/run/fuseloop-test.lock
flock -w 600 9 || die "the test lock /run/fuseloop-test.lock stays taken"

TMP=$(mktemp -d /tmp/fuseloop-bench.XXXXXX)
chmod 0755 "$TMP"
SUFFIX=$(printf '%04x%04x' "$RANDOM" "$RANDOM")
GROUP=flbg-$SUFFIX
GRANTED=flbu-$SUFFIX
REFUSED=flbr-$SUFFIX
RULES=$RULES_DIR/40-fuseloop-bench-$SUFFIX.rules
DAEMON_PID=
ACTIVATED_PID=

cleanup() {
        set +e
        for pid in $DAEMON_PID $ACTIVATED_PID; do
                kill -TERM "$pid" 2>/dev/null
                for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
        done
        rm -f "$RULES"
        userdel "$GRANTED" 2>/dev/null
        userdel "$REFUSED" 2>/dev/null
        groupdel "$GROUP" 2>/dev/null
        rm -rf "$TMP"
        rmdir "$RUN_DIR" 2>/dev/null
}
trap cleanup EXIT

has_owner() {
        busctl --system --auto-start=no call org.freedesktop.DBus /org/freedesktop/DBus \
                org.freedesktop.DBus NameHasOwner s "$BUS" 2>/dev/null | grep -q 'b true'
}
owner_pid() {
        busctl --system --auto-start=no call org.freedesktop.DBus /org/freedesktop/DBus \
                org.freedesktop.DBus GetConnectionUnixProcessID s "$BUS" | awk '{print $2}'
}
ms() { local t=${EPOCHREALTIME//[.,]/}; echo $((t / 1000)); }
us() { local t=${EPOCHREALTIME//[.,]/}; echo "$t"; }

has_owner && die "$BUS is owned already (pid $(owner_pid)); stop that daemon first"

groupadd --system "$GROUP"
useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        --no-user-group --gid nogroup --groups "$GROUP" "$GRANTED"
useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        --no-user-group --gid nogroup "$REFUSED"
cat >"$RULES.tmp" <<EOF
polkit.addRule(function(action, subject) {
        if (action.id == "org.proxmox.fuseloop.map" && subject.isInGroup("$GROUP"))
                return polkit.Result.YES;
});
EOF
mv "$RULES.tmp" "$RULES"
head -c $((16 << 20)) /dev/urandom >"$TMP/data.img"
chmod 0644 "$TMP/data.img"

# Wait until polkitd has read the rules file: a Map by the granted user succeeds.
"$BUILD/fuseloopd" --run-dir "$RUN_DIR" --idle-timeout 0 --log-level warning </dev/null >"$TMP/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 100); do has_owner && break; sleep 0.1; done
has_owner || die "fuseloopd did not start: $(cat "$TMP/daemon.log")"
for _ in $(seq 100); do
        if runuser -u "$GRANTED" -- "$BUILD/fuseloopctl" map probe "$TMP/data.img" >/dev/null 2>&1; then
                runuser -u "$GRANTED" -- "$BUILD/fuseloopctl" unmap probe
                break
        fi
        sleep 0.2
done

# time_ms USER COMMAND...: runs COMMAND as USER, prints its wall time in ms (fails if it fails,
# unless EXPECT_FAIL=1, then it must fail).
time_us() {
        local user=$1 t0 t1 rc=0

        shift
        t0=$(us)
        runuser -u "$user" -- "$@" >/dev/null 2>&1 || rc=$?
        t1=$(us)
        if [ "${EXPECT_FAIL:-0}" = 1 ]; then
                [ "$rc" -ne 0 ] || die "'$*' as $user succeeded"
        else
                [ "$rc" -eq 0 ] || die "'$*' as $user failed ($rc)"
        fi
        echo $((t1 - t0))
}

declare -A SAMPLES
sample() { SAMPLES[$1]+="$2 "; }

for i in $(seq "$RUNS"); do
        sample "map as root (no polkit)" "$(time_us root "$BUILD/fuseloopctl" map "r$i" "$TMP/data.img")"
        sample "unmap as root" "$(time_us root "$BUILD/fuseloopctl" unmap "r$i")"
        sample "map as user (polkit yes)" "$(time_us "$GRANTED" "$BUILD/fuseloopctl" map "u$i" "$TMP/data.img")"
        sample "unmap as owner (no polkit)" "$(time_us "$GRANTED" "$BUILD/fuseloopctl" unmap "u$i")"
        sample "map refused (polkit no)" "$(EXPECT_FAIL=1 time_us "$REFUSED" "$BUILD/fuseloopctl" map "x$i" "$TMP/data.img")"
        sample "list, daemon running" "$(time_us "$REFUSED" "$BUILD/fuseloopctl" list)"
done

kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || true
DAEMON_PID=

if [ -r /usr/share/dbus-1/system-services/$BUS.service ] && [ -x /usr/sbin/fuseloopd ]; then
        for i in $(seq $(( (RUNS + 3) / 4 ))); do
                for _ in $(seq 100); do has_owner || break; sleep 0.1; done
                has_owner && die "$BUS still owned before activation run $i"
                sample "list, no daemon (activation)" "$(time_us "$REFUSED" "$BUILD/fuseloopctl" list)"
                ACTIVATED_PID=$(owner_pid)
                [ "$(readlink "/proc/$ACTIVATED_PID/exe")" = /usr/sbin/fuseloopd ] ||
                        die "pid $ACTIVATED_PID owns $BUS but is not /usr/sbin/fuseloopd"
                kill -TERM "$ACTIVATED_PID"
                for _ in $(seq 100); do [ -e "/proc/$ACTIVATED_PID" ] || break; sleep 0.1; done
                ACTIVATED_PID=
        done
else
        echo "(no installed activation file: the activation row is left out)"
fi

stats() { # prints "median min max" in ms (one decimal) of the microsecond samples
        tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -n |
                awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
                                          printf "%.1f %.1f %.1f %d\n", m / 1000, v[1] / 1000, v[NR] / 1000, NR }'
}

read -r BASE _ <<<"$(stats "${SAMPLES["map as root (no polkit)"]}")"
printf '%-32s %8s %8s %8s %5s %8s\n' "operation (fuseloopctl)" median min max runs "ratio"
for k in "map as root (no polkit)" "map as user (polkit yes)" "map refused (polkit no)" \
         "unmap as root" "unmap as owner (no polkit)" "list, daemon running" "list, no daemon (activation)"; do
        [ -n "${SAMPLES[$k]:-}" ] || continue
        read -r med min max n <<<"$(stats "${SAMPLES[$k]}")"
        printf '%-32s %8s %8s %8s %5s %8s\n' "$k" "$med" "$min" "$max" "$n" \
                "$(awk -v a="$med" -v b="$BASE" 'BEGIN { printf "%.2f", a / b }')"
done
echo "(milliseconds, wall time of one fuseloopctl run through runuser; ratio: median / median of map as root)"
