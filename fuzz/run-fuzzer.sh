#!/bin/bash
# run-fuzzer.sh - runs one fuzz target as a test (fuzz/meson.build registers one per target):
#
#   run-fuzzer.sh libfuzzer|replay BINARY CORPUS-DIR DICT|'' ARTIFACT-DIR [LIBFUZZER-OPTION...]
#
# libfuzzer: fuzzes for FUSELOOP_FUZZ_SECONDS seconds (default 20; 0 runs the seed inputs only),
# starting from the seed corpus CORPUS-DIR, which is only read: new inputs go to a temporary
# directory (or to FUSELOOP_FUZZ_WORK_DIR, which keeps them). Ends with the line
#   fuzz-stats: NAME executions=N seconds=S exec/s=R new-inputs=I peak-rss-mb=M
# which tests/run.sh quotes. A crash, sanitizer report, leak, slow input (10 s) or memory
# exhaustion (2 GiB) fails the test: the input that caused it is kept in ARTIFACT-DIR and printed
# here (base64 and a hex dump) with the command that reproduces it.
# replay: BINARY was built with standalone.c; runs it once on every seed input.
#
# Exit status: 0 if the target held, 1 otherwise (2: usage).
set -euo pipefail

[ $# -ge 5 ] || { echo "usage: $0 libfuzzer|replay BINARY CORPUS-DIR DICT|'' ARTIFACT-DIR [OPTION...]" >&2; exit 2; }
MODE=$1 BIN=$2 CORPUS=$3 DICT=$4 ARTIFACTS=$5
shift 5
NAME=$(basename "$BIN")
BIN=$(readlink -f "$BIN")
SECONDS_MAX=${FUSELOOP_FUZZ_SECONDS:-20}
[[ $SECONDS_MAX =~ ^[0-9]+$ ]] || { echo "FUSELOOP_FUZZ_SECONDS must be a number of seconds" >&2; exit 2; }
[ -d "$CORPUS" ] || { echo "$NAME: no seed corpus at $CORPUS" >&2; exit 1; }
exec 2>&1

if [ "$MODE" = replay ]; then
        echo "$NAME: replaying the seed corpus $CORPUS (built without libFuzzer)"
        exec "$BIN" "$CORPUS"
fi
[ "$MODE" = libfuzzer ] || { echo "unknown mode '$MODE'" >&2; exit 2; }

# Sanitizer reports end the process with a stack trace; libFuzzer then writes out the input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:print_summary=1}

mkdir -p "$ARTIFACTS"
if [ -n "${FUSELOOP_FUZZ_WORK_DIR:-}" ]; then
        WORK=$FUSELOOP_FUZZ_WORK_DIR/${NAME#fuzz-}
        mkdir -p "$WORK"
else
        WORK=$(mktemp -d "${TMPDIR:-/tmp}/$NAME.XXXXXX")
fi
LOG=$(mktemp "${TMPDIR:-/tmp}/$NAME.log.XXXXXX")
trap 'rm -f "$LOG"; [ -n "${FUSELOOP_FUZZ_WORK_DIR:-}" ] || rm -rf "$WORK"' EXIT

ARGS=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1
      -artifact_prefix="$ARTIFACTS/$NAME-")
if [ "$SECONDS_MAX" -eq 0 ]; then
        ARGS+=(-runs=0)
else
        ARGS+=(-max_total_time="$SECONDS_MAX")
fi
[ -z "$DICT" ] || ARGS+=(-dict="$DICT")

echo "$NAME: $BIN ${ARGS[*]} $* $WORK $CORPUS"
rc=0
"$BIN" "${ARGS[@]}" "$@" "$WORK" "$CORPUS" >"$LOG" 2>&1 || rc=$?
cat "$LOG"

stat_of() { sed -n "s/^stat::$1: *\([0-9][0-9]*\).*/\1/p" "$LOG" | tail -n 1; }
execs=$(stat_of number_of_executed_units)
rate=$(stat_of average_exec_per_sec)
added=$(stat_of new_units_added)
rss=$(stat_of peak_rss_mb)
echo
echo "fuzz-stats: $NAME executions=${execs:-?} seconds=$SECONDS_MAX exec/s=${rate:-?} new-inputs=${added:-?} peak-rss-mb=${rss:-?}"

if [ "$rc" -eq 0 ]; then
        echo "PASS: $NAME"
        exit 0
fi

echo
echo "FAIL: $NAME exited with status $rc"
found=0
while read -r f; do
        [ -f "$f" ] || continue
        found=1
        echo
        echo "----- the input that failed: $f ($(stat -c %s "$f") bytes) -----"
        if [ "$(stat -c %s "$f")" -le 65536 ]; then
                echo "base64:"
                base64 -w 76 "$f"
        fi
        echo "hex dump (first 4 KiB):"
        head -c 4096 "$f" | od -A x -t x1z -v
        echo "reproduce: $BIN $f"
        echo "  or, from the base64 above: base64 -d >input <<'EOF' ... EOF; $BIN input"
        echo "----- end of input -----"
done < <(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$LOG")
[ "$found" -eq 1 ] || echo "(libFuzzer wrote no input file: see its output above)"
exit 1
