#!/bin/bash
# test-map-many: 64 mappings at once. 64 distinct sources with random content are mapped by 64
# calls in flight together (fuseloopctl with an fd, MapURI through busctl, Map with an fd and
# offset/size through python-dbus, and fuseloopctl --partscan on GPT images); every call gets
# its own loop device, "fuseloopctl list" shows all 64 active, all 64 devices read in parallel
# (O_DIRECT) give the sha256 of their source and the partitions of the scanned images exist; 64
# unmaps in flight together (by name, by device, through busctl and on the mapping object) leave
# nothing behind, and the daemon has as many fds open as before.
# shellcheck source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"

N=64
# Small sources: the machine that runs the suite may have two cores and 64 readers share them.
MIB=4
# Python-dbus maps this part of its file.
PART_OFFSET=$((1 << 20))
PART_SIZE=$((2 << 20))

# kind I: how mapping I is made and unmapped; each kind comes up every eight mappings.
kind() {
        case $(($1 % 8)) in
        0) echo partscan ;;
        1) echo mapuri ;;
        2) echo mapfd ;;
        *) echo ctl ;;
        esac
}

step "$N sources"
for ((i = 0; i < N; i++)); do
        f=$FL_TMP/src-$i.img
        if [ "$(kind "$i")" = partscan ]; then
                # A GPT image with two partitions of random data.
                head -c $((8 << 20)) /dev/urandom >"$f"
                sfdisk -q "$f" >"$FL_TMP/sfdisk.log" 2>&1 <<EOF || { cat "$FL_TMP/sfdisk.log"; fail "sfdisk failed"; }
label: gpt
start=2048, size=4096, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="one"
start=6144, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="two"
EOF
        else
                head -c $((MIB << 20)) /dev/urandom >"$f"
        fi
        if [ "$(kind "$i")" = mapfd ]; then
                dd if="$f" iflag=skip_bytes,count_bytes skip="$PART_OFFSET" count="$PART_SIZE" bs=64K \
                        status=none | sha256sum | cut -d' ' -f1 >"$FL_TMP/want-$i"
        else
                sha256_of "$f" >"$FL_TMP/want-$i"
        fi
done
assert_eq "$N" "$(cat "$FL_TMP"/want-* | sort -u | wc -l)" "distinct sources"
start_daemon
daemon_fds() { find "/proc/$FL_DAEMON_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }
fds_back() { [ "$(daemon_fds)" -le "$BASE_FDS" ]; }
BASE_FDS=$(daemon_fds)

# map_one I: makes mapping many-I the way its kind says and writes its device to dev-I.
map_one() {
        local i=$1 f=$FL_TMP/src-$1.img out

        case $(kind "$i") in
        partscan) "$FUSELOOPCTL" map --partscan "many-$i" "$f" ;;
        ctl) "$FUSELOOPCTL" map "many-$i" "$f" ;;
        mapuri)
                # os "/org/proxmox/FuseLoop1/mapping/many_2dI" "/dev/loopN"
                out=$(busctl_ call "$FL_BUS" "$FL_PATH" "$FL_IFACE" MapURI 'ssa{sv}' "many-$i" "file://$f" 0) ||
                        return 1
                out=${out##* }
                echo "${out//\"/}"
                ;;
        mapfd)
                out=$(flbus map-fd "many-$i" "$f" offset=t:"$PART_OFFSET" size=t:"$PART_SIZE") || return 1
                echo "${out#* }"
                ;;
        esac
}

# unmap_one I: ends mapping many-I, each kind another way.
unmap_one() {
        local i=$1

        case $(kind "$i") in
        partscan) "$FUSELOOPCTL" unmap "$(cat "$FL_TMP/dev-$i")" ;;
        ctl) "$FUSELOOPCTL" unmap "many-$i" ;;
        mapuri) busctl_ call "$FL_BUS" "$FL_PATH" "$FL_IFACE" Unmap 'sa{sv}' "many-$i" 0 ;;
        mapfd) flbus unmap-object "many-$i" ;;
        esac
}

step "$N maps at once"
START=$(now_ms)
PIDS=()
for ((i = 0; i < N; i++)); do
        map_one "$i" >"$FL_TMP/dev-$i" 2>"$FL_TMP/map-err-$i" 8>&- &
        PIDS+=($!)
done
FAILED=()
for ((i = 0; i < N; i++)); do
        wait "${PIDS[$i]}" || FAILED+=("many-$i ($(kind "$i")): $(cat "$FL_TMP/map-err-$i")")
done
[ ${#FAILED[@]} -eq 0 ] || fail "${#FAILED[@]} of $N maps failed:"$'\n'"$(printf '%s\n' "${FAILED[@]}")"
log "$N maps took $(($(now_ms) - START)) ms"

DEVS=()
for ((i = 0; i < N; i++)); do
        DEV=$(tail -n 1 "$FL_TMP/dev-$i")
        [[ $DEV =~ ^/dev/loop[0-9]+$ ]] || fail "map of many-$i ($(kind "$i")) printed '$(cat "$FL_TMP/dev-$i")'"
        echo "$DEV" >"$FL_TMP/dev-$i"
        DEVS+=("$DEV")
        assert_eq "$FL_RUN_DIR/many-$i" "$(backing_file "$DEV")" "backing file of $DEV"
        if [ "$(kind "$i")" = partscan ]; then
                is_block "${DEV}p1" || fail "${DEV}p1 (many-$i) missing after map --partscan returned"
                is_block "${DEV}p2" || fail "${DEV}p2 (many-$i) missing after map --partscan returned"
        fi
done
assert_eq "$N" "$(printf '%s\n' "${DEVS[@]}" | sort -u | wc -l)" "distinct loop devices"
assert_eq "$N" "$(loop_devices_backed_by_run_dir | wc -l)" "loop devices backed by $FL_RUN_DIR"
log "the daemon has $(daemon_fds) fds open with $N mappings ($BASE_FDS before)"

step "fuseloopctl list shows all $N, active"
LIST=$(ctl list --no-legend)
printf '%s\n' "$LIST"
for ((i = 0; i < N; i++)); do
        ROW=$(awk -v n="many-$i" '$1 == n' <<<"$LIST")
        [ -n "$ROW" ] || fail "many-$i is not in the output of fuseloopctl list"
        read -r NAME DEV SIZE STATE _ <<<"$ROW"
        assert_eq "${DEVS[$i]}" "$DEV" "device of $NAME in fuseloopctl list"
        assert_eq active "$STATE" "state of $NAME in fuseloopctl list (size $SIZE)"
done
assert_eq "$N" "$(grep -c . <<<"$LIST")" "lines of fuseloopctl list"

step "read all $N devices at once"
drop_caches
START=$(now_ms)
PIDS=()
for ((i = 0; i < N; i++)); do
        sha256_direct "${DEVS[$i]}" >"$FL_TMP/got-$i" 2>"$FL_TMP/read-err-$i" 8>&- &
        PIDS+=($!)
done
for ((i = 0; i < N; i++)); do
        wait "${PIDS[$i]}" || fail "reading ${DEVS[$i]} (many-$i) failed: $(cat "$FL_TMP/read-err-$i")"
done
log "reading $N devices in parallel took $(($(now_ms) - START)) ms"
for ((i = 0; i < N; i++)); do
        assert_eq "$(cat "$FL_TMP/want-$i")" "$(cat "$FL_TMP/got-$i")" "sha256 of ${DEVS[$i]} (many-$i, $(kind "$i"))"
done
for ((i = 0; i < N; i++)); do
        assert_eq 0 "$(get_prop "many-$i" ReadErrors)" "ReadErrors of many-$i"
done

step "$N unmaps at once"
START=$(now_ms)
PIDS=()
for ((i = 0; i < N; i++)); do
        unmap_one "$i" >"$FL_TMP/unmap-out-$i" 2>&1 8>&- &
        PIDS+=($!)
done
FAILED=()
for ((i = 0; i < N; i++)); do
        wait "${PIDS[$i]}" || FAILED+=("many-$i ($(kind "$i")): $(cat "$FL_TMP/unmap-out-$i")")
done
[ ${#FAILED[@]} -eq 0 ] || fail "${#FAILED[@]} of $N unmaps failed:"$'\n'"$(printf '%s\n' "${FAILED[@]}")"
log "$N unmaps took $(($(now_ms) - START)) ms"
for ((i = 0; i < N; i++)); do
        [ "$(kind "$i")" = partscan ] || continue
        wait_for 10 "${DEVS[$i]}p1 and p2 to go" eval "is_not_block ${DEVS[$i]}p1 && is_not_block ${DEVS[$i]}p2"
done
# No mapping listed, no mapping object, no loop device backed by, mount in or file in the run
# directory.
assert_nothing_mapped
# Every fd a mapping held is closed again (a job's thread may still be on its way out).
wait_until 10 fds_back || true
assert_eq "$BASE_FDS" "$(daemon_fds)" "open fds of the daemon after $N maps and unmaps"
