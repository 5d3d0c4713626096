#!/bin/bash
# sandbox-exec.sh RUN-DIR COMMAND [ARG...]: runs COMMAND, by exec (its pid stays this script's
# pid), with the file system and the capabilities that systemd/fuseloopd.service gives the
# daemon, as far as they can be had without systemd as PID 1:
#
#   own mount namespace, host mounts propagate in  PrivateMounts=yes (slave propagation)
#   every mount read-only except /dev and RUN-DIR  ProtectSystem=strict, ProtectHome=read-only,
#                                                  RuntimeDirectory= (kept writable)
#   /sys read-only                                 ProtectKernelTunables=, ProtectControlGroups=
#   a /proc of its own: hidepid=invisible,         ProtectProc=invisible, ProcSubset=pid
#     subset=pid
#   capability bounding set                        CapabilityBoundingSet=
#   no new privileges                              NoNewPrivileges=yes
#
# Not imitated: the system call filter, the device allow list (a cgroup BPF program), the
# address families, and /dev/kmsg and the kernel module directories being hidden.
# Used through FL_DAEMON_WRAPPER (lib.sh) by tests/integration/test-daemon-sandbox.sh, whose
# daemon then runs the way the unit runs it; the host is never changed: every mount is made
# inside the new namespace.
set -euo pipefail

# The capabilities of CapabilityBoundingSet= in systemd/fuseloopd.service.in, as setpriv spells them.
CAPS=-all,+sys_admin,+dac_read_search

if [ "${1:-}" != --inside ]; then
        [ $# -ge 2 ] || { echo "usage: $0 RUN-DIR COMMAND [ARG...]" >&2; exit 2; }
        # Slave propagation: mounts made on the host later show up inside, none of ours go out.
        exec unshare --mount --propagation slave -- "$0" --inside "$@"
fi
shift
run_dir=$1
shift

# unescape PATH: mountinfo writes space, tab, newline and backslash as \ooo.
unescape() { printf '%b' "$1"; }

# RUN-DIR becomes a mount point of its own, so that it stays writable below a read-only parent.
mkdir -p "$run_dir"
mount --bind "$run_dir" "$run_dir"

# Every mount that is writable becomes read-only (each one: a read-only remount of a parent does
# not change its submounts), except /dev and below, /proc and below (replaced next) and RUN-DIR.
# Mounts that are read-only already are left as they are. A mount point hidden by a later mount on
# the same path cannot be reached (nor remounted) by its path; the check below covers the top one.
mounts() {
        local mp opts

        while read -r _ _ _ _ mp opts _; do
                mp=$(unescape "$mp")
                case $mp in
                /dev | /dev/* | /proc | /proc/*) continue ;;
                esac
                [ "$mp" != "$run_dir" ] || continue
                printf '%s\t%s\n' "$opts" "$mp"
        done </proc/self/mountinfo
}
while IFS=$'\t' read -r opts mp; do
        case ,$opts, in
        *,ro,*) ;;
        *) mount -o remount,bind,ro "$mp" 2>/dev/null || true ;;
        esac
done < <(mounts)
# access(W_OK) fails with EROFS on a read-only mount, whatever the permissions.
while IFS=$'\t' read -r _ mp; do
        if [ -w "$mp" ]; then
                echo "sandbox-exec: $mp is still writable" >&2
                exit 1
        fi
done < <(mounts)
[ -w "$run_dir" ] || { echo "sandbox-exec: $run_dir is not writable" >&2; exit 1; }

# A /proc of our own that shows only our processes (root processes with more capabilities than
# ours are invisible, like every other user's) and only the per-process part of /proc.
mount -t proc -o nosuid,nodev,noexec,hidepid=invisible,subset=pid proc /proc

exec setpriv --bounding-set "$CAPS" --no-new-privs -- "$@"
