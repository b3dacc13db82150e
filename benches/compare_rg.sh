#!/usr/bin/env bash
# Compare the childguard detector engine (full rule set, 17 categories, one
# thread) with ripgrep `rg -o` running four equivalent regexes (ID, mobile,
# school, age) on the same generated Chinese log, in the same run.
#
#   benches/compare_rg.sh [SIZE_MB]     (default 200)
#   PI_SHARE=0.2 benches/compare_rg.sh  share of lines carrying PI (default 0.2;
#                                       1.0 = every line a labelled case, the densest mix)
#
# MB/s is reported on CPU time (user+sys) for both tools, so a busy machine
# does not distort the ratio; REPEAT=N (default 3) alternates N runs of each
# and compares the medians.
#
# Then multi-core scaling: the engine on the same chunks with 2 threads
# (engine_throughput --threads 2: wall speed-up and CPU efficiency, i.e. CPU
# time of 1 thread / 2 threads, which a busy machine does not distort), and
# `childguard scan` of the same log (its parallel newline-aligned chunking,
# reading and JSONL output included) with --threads 1 pinned to one core and
# --threads 2 on two cores (SCALING=0 skips both).
#
# Needs: cargo; ripgrep (installed with `cargo install ripgrep` when absent).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB="${1:-200}"
PI_SHARE="${PI_SHARE:-0.2}"
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

# ~175 bytes per line on average
LINES=$(( SIZE_MB * 1000000 / 175 ))
OUT="$WORK/big-$PI_SHARE"
if [ ! -f "$OUT/corpus.log" ]; then
  "$BIN" corpus --out "$OUT" --lines "$LINES" --rows 0 --seed 1 --as-of "$AS_OF" --pi-share "$PI_SHARE" 2>/dev/null
fi
LOG="$OUT/corpus.log"
BYTES=$(stat -c %s "$LOG")
MB=$(awk -v b="$BYTES" 'BEGIN{printf "%.1f", b/1e6}')
echo "log: $LOG ($MB MB)"
cat "$LOG" > /dev/null   # warm the page cache

# Equivalent regexes: 18-digit ID (with X), mobile, school name, age.
ID='[1-9][0-9]{5}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]'
MOB='1[3-9][0-9]{9}'
SCHOOL='[\p{Han}]{2,12}(?:小学|中学|幼儿园|学校)'
AGE='[0-9]{1,3}岁|年龄[：: ]*[0-9]{1,3}'

# REPEAT alternating runs of each (default 3); the medians are compared, so
# one run slowed by a neighbour on a shared machine does not set the ratio.
REPEAT="${REPEAT:-3}"
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
RG_CPUS=""; CG_CPUS=""
for _ in $(seq "$REPEAT"); do
  RG_T=$( { /usr/bin/time -f "%U %S %e" taskset -c 0 rg -o -e "$ID" -e "$MOB" -e "$SCHOOL" -e "$AGE" -j1 "$LOG" | wc -l > "$WORK/rg.count"; } 2>&1 )
  RG_CPUS="$RG_CPUS $(echo "$RG_T" | awk '{print $1+$2}')"
  CG_OUT=$(taskset -c 0 "$EX" "$LOG" --as-of "$AS_OF" 2>"$WORK/cg.counts")
  echo "$CG_OUT"
  CG_CPUS="$CG_CPUS $(echo "$CG_OUT" | sed -E 's/.*cpu ([0-9.]+) s = .*/\1/')"
done
RG_CPU=$(echo "$RG_CPUS" | tr ' ' '\n' | grep . | median)
CG_CPU=$(echo "$CG_CPUS" | tr ' ' '\n' | grep . | median)
RG_MBS=$(awk -v m="$MB" -v s="$RG_CPU" 'BEGIN{printf "%.1f", m/s}')
CG_MBS=$(awk -v m="$MB" -v s="$CG_CPU" 'BEGIN{printf "%.1f", m/s}')
cat "$WORK/cg.counts"
echo "rg -o (4 regexes, 1 thread): $(cat "$WORK/rg.count") matches; median cpu of $REPEAT: ${RG_CPU}s = $RG_MBS MB/s (runs:$RG_CPUS)"
echo "childguard engine (17 categories, 1 thread): median cpu of $REPEAT: ${CG_CPU}s = $CG_MBS MB/s (runs:$CG_CPUS)"
RATIO=$(awk -v a="$CG_MBS" -v b="$RG_MBS" 'BEGIN{printf "%.2f", a/b}')
echo "ratio childguard/rg (median cpu MB/s, 17 categories vs 4 regexes): ${RATIO}x"

if [ "${SCALING:-1}" != 0 ] && [ "$(nproc)" -ge 2 ]; then
  taskset -c 0,1 "$EX" "$LOG" --as-of "$AS_OF" --threads 2 2>/dev/null | tail -1
  export CHILDGUARD_STATE_DIR="$WORK/state" CHILDGUARD_FINGERPRINT_KEY=bench
  scan() { # CPUS THREADS -> "user sys wall"
    { /usr/bin/time -f "%U %S %e" taskset -c "$1" "$BIN" scan --threads "$2" --no-save -q \
        --as-of "$AS_OF" --format jsonl -o "$WORK/scan-$2.jsonl" "$LOG" || [ $? -eq 1 ]; } 2>&1 | tail -1
  }
  T1=$(scan 0 1)
  T2=$(scan 0,1 2)
  W1=$(echo "$T1" | awk '{print $3}')
  W2=$(echo "$T2" | awk '{print $3}')
  echo "childguard scan (files, all outputs): 1 thread wall ${W1}s = $(awk -v m="$MB" -v s="$W1" 'BEGIN{printf "%.1f", m/s}') MB/s (cpu $(echo "$T1" | awk '{print $1+$2}')s); 2 threads wall ${W2}s = $(awk -v m="$MB" -v s="$W2" 'BEGIN{printf "%.1f", m/s}') MB/s (cpu $(echo "$T2" | awk '{print $1+$2}')s)"
  echo "scan scaling 1 -> 2 threads: wall $(awk -v a="$W1" -v b="$W2" 'BEGIN{printf "%.2f", a/b}')x, cpu efficiency $(awk -v a="$T1" -v b="$T2" 'BEGIN{split(a,x," "); split(b,y," "); printf "%.2f", (x[1]+x[2])/(y[1]+y[2])}') (findings: $(wc -l < "$WORK/scan-1.jsonl") vs $(wc -l < "$WORK/scan-2.jsonl"))"
fi
