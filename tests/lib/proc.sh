# shellcheck shell=bash
# Process and bus helpers shared by tests/lib/services.sh and bench/run.sh (sourced).

# starttime PID: the process's start time in clock ticks (field 22 of /proc/PID/stat), which
# tells the process apart from a later one that got the same pid.
starttime() {
        local stat f
        stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        read -r -a f <<<"${stat##*) }"
        printf '%s\n' "${f[19]}"
}

# alive PID: the process exists and is not a zombie.
alive() { [ -e "/proc/$1" ] && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# wait_until SECS COMMAND...: polls COMMAND every 0.1 s until it succeeds or SECS have passed.
wait_until() {
        local n=$(($1 * 10))
        shift
        until "$@" >/dev/null 2>&1; do
                n=$((n - 1))
                [ "$n" -gt 0 ] || return 1
                sleep 0.1
        done
}

# has_owner NAME: someone owns NAME on the system bus (never starts a service for it).
has_owner() {
        busctl --system --timeout=2 --auto-start=no call org.freedesktop.DBus /org/freedesktop/DBus \
                org.freedesktop.DBus NameHasOwner s "$1" 2>/dev/null | grep -q 'b true'
}

# owner_pid NAME: the pid of NAME's owner on the system bus.
owner_pid() {
        busctl --system --timeout=2 --auto-start=no call org.freedesktop.DBus /org/freedesktop/DBus \
                org.freedesktop.DBus GetConnectionUnixProcessID s "$1" 2>/dev/null | awk '{print $2}'
}
