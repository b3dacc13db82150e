#!/usr/bin/env bash
# Compare the childguard detector engine (full rule set, 17 categories, one
# thread) with ripgrep `rg -o` running four equivalent regexes (ID, mobile,
# school, age) on the same generated Chinese log, in the same run.
#
#   benches/compare_rg.sh [SIZE_MB]     (default 200)
#
# Needs: cargo; ripgrep (installed with `cargo install ripgrep` when absent).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-200}"
WORK="${CG_BENCH_DIR:-$(mktemp -d)}"
AS_OF=2025-06-01
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

if ! command -v rg >/dev/null 2>&1; then
  echo "installing ripgrep (cargo install ripgrep)" >&2
  cargo install ripgrep >&2
fi

cargo build --release --quiet --bin childguard --example engine_throughput
BIN="$CARGO_TARGET_DIR/release/childguard"
EX="$CARGO_TARGET_DIR/release/examples/engine_throughput"

# ~250 bytes per line on average
LINES=$(( SIZE_MB * 1000000 / 250 ))
if [ ! -f "$WORK/big/corpus.log" ]; then
  "$BIN" corpus --out "$WORK/big" --lines "$LINES" --rows 0 --seed 1 --as-of "$AS_OF" 2>/dev/null
fi
LOG="$WORK/big/corpus.log"
BYTES=$(stat -c %s "$LOG")
MB=$(awk -v b="$BYTES" 'BEGIN{printf "%.1f", b/1e6}')
echo "log: $LOG ($MB MB)"
cat "$LOG" > /dev/null   # warm the page cache

# Equivalent regexes: 18-digit ID (with X), mobile, school name, age.
ID='[1-9][0-9]{5}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]'
MOB='1[3-9][0-9]{9}'
SCHOOL='[\p{Han}]{2,12}(?:小学|中学|幼儿园|学校)'
AGE='[0-9]{1,3}岁|年龄[：: ]*[0-9]{1,3}'

t0=$(date +%s.%N)
taskset -c 0 rg -o -e "$ID" -e "$MOB" -e "$SCHOOL" -e "$AGE" -j1 "$LOG" | wc -l > "$WORK/rg.count"
t1=$(date +%s.%N)
RG_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
RG_MBS=$(awk -v m="$MB" -v s="$RG_S" 'BEGIN{printf "%.1f", m/s}')
echo "rg -o (4 regexes, 1 thread): $(cat "$WORK/rg.count") matches in ${RG_S}s = $RG_MBS MB/s"

CG_OUT=$(taskset -c 0 "$EX" "$LOG" --as-of "$AS_OF" 2>"$WORK/cg.counts")
echo "$CG_OUT"
cat "$WORK/cg.counts"
CG_MBS=$(echo "$CG_OUT" | sed -E 's/.* = ([0-9.]+) MB\/s/\1/')
RATIO=$(awk -v a="$CG_MBS" -v b="$RG_MBS" 'BEGIN{printf "%.2f", a/b}')
echo "ratio childguard/rg: ${RATIO}x"
