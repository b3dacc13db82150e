#!/usr/bin/env bash
# Throughput and peak memory of `childguard scan` on a generated 1 GB
# Chinese application log, compared with ripgrep running equivalent regexes
# (18-digit resident ID, 11-digit mobile) on the same file in the same run.
#
#   benches/scan_memory.sh [SIZE_MB]      (default 1024)
#
# Prints peak RSS (GNU time), MB/s for both and the ratio. Target: peak RSS < 200 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-1024}
WORK=${CHILDGUARD_BENCH_DIR:-$(mktemp -d /tmp/cg-bench.XXXXXX)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
log() { printf '[bench] %s\n' "$*" >&2; }

[ -x /usr/bin/time ] || { log "installing GNU time"; apt-get install -y -qq time >/dev/null; }
if ! command -v rg >/dev/null 2>&1; then
  log "installing ripgrep"
  apt-get install -y -qq ripgrep >/dev/null 2>&1 || cargo install -q ripgrep
fi

log "building release binary"
cargo build --release -q
BIN="$CARGO_TARGET_DIR/release/childguard"

LOG="$WORK/app.log"
if [ ! -s "$LOG" ] || [ "$(stat -c %s "$LOG")" -lt $((SIZE_MB * 1000000)) ]; then
  log "generating ${SIZE_MB} MB log at $LOG"
  python3 - "$LOG" "$SIZE_MB" <<'PY'
import random, sys
path, size_mb = sys.argv[1], int(sys.argv[2])
W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
def rid(rnd):
    region = rnd.choice(["110105", "310104", "440305", "652925", "510107"])
    y = rnd.randint(1960, 2020)
    body = f"{region}{y}{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}{rnd.randint(0, 999):03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, W)) % 11]
rnd = random.Random(42)
lines = []
for i in range(12000):
    t = f"2025-05-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}.{i % 1000:03d}"
    k = i % 10
    if k == 0:
        lines.append(f"{t} INFO  [enroll] 学生报名成功 student_id=S{i:08d} 身份证 {rid(rnd)} 家长电话 1{rnd.choice('3456789')}{rnd.randint(0, 10**9 - 1):09d} 学校 第{i % 30 + 1}小学\n")
    elif k == 3:
        lines.append(f"{t} WARN  [sms] send failed to 1{rnd.choice('3456789')}{rnd.randint(0, 10**9 - 1):09d} retry={i % 5} order=O{i * 7919:012d}\n")
    else:
        lines.append(f"{t} DEBUG [http] GET /api/v1/classes/{i % 400}/schedule?page={i % 9} status=200 took={i % 997}ms trace={rnd.getrandbits(64):016x} 请求处理完成\n")
block = "".join(lines).encode()
target = size_mb * 1000 * 1000
with open(path, "wb") as f:
    written = 0
    while written < target:
        f.write(block)
        written += len(block)
PY
fi
BYTES=$(stat -c %s "$LOG")
MB=$(python3 -c "print($BYTES/1e6)")
log "file: $BYTES bytes"
# Warm the page cache so both tools read from memory.
cat "$LOG" > /dev/null

# ASCII word boundaries: a value inside a longer digit run is not a match (as in childguard).
ID_RE='(?-u:\b)[1-9][0-9]{5}(?:19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?-u:\b)'
MOBILE_RE='(?-u:\b)1[3-9][0-9]{9}(?-u:\b)'

run_timed() { # name outfile cmd...
  local name=$1 out=$2; shift 2
  /usr/bin/time -v -o "$WORK/$name.time" "$@" > "$out" 2> "$WORK/$name.err" || true
  local secs rss cpu
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/$name.time" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$name.time")
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$WORK/$name.time")
  echo "$secs $rss $cpu"
}

THREADS=${THREADS:-$(nproc)}
read -r CG_S CG_RSS CG_CPU < <(run_timed childguard "$WORK/findings.jsonl" "$BIN" scan "$LOG" --format jsonl --quiet --threads "$THREADS" --as-of 2025-06-01)
CG_N=$(wc -l < "$WORK/findings.jsonl")
read -r RG_S RG_RSS RG_CPU < <(run_timed rg "$WORK/rg.out" rg --threads "$THREADS" -o -n -b --no-filename -e "$ID_RE" -e "$MOBILE_RE" "$LOG")
RG_N=$(wc -l < "$WORK/rg.out")
# Single-threaded, for per-core numbers.
read -r CG1_S CG1_RSS CG1_CPU < <(run_timed childguard1 "$WORK/findings1.jsonl" "$BIN" scan "$LOG" --format jsonl --quiet --threads 1 --as-of 2025-06-01)
read -r RG1_S _ RG1_CPU < <(run_timed rg1 "$WORK/rg1.out" rg --threads 1 -o -n -b --no-filename -e "$ID_RE" -e "$MOBILE_RE" "$LOG")

python3 - <<PY
mb = $MB
cg, rg, cg1, rg1 = $CG_S, $RG_S, $CG1_S, $RG1_S
print(f"input:              {mb:.0f} MB ({$BYTES} bytes), {$THREADS} thread(s)")
print(f"childguard scan:    {cg:.2f} s  {mb/cg:.0f} MB/s  peak RSS {$CG_RSS/1024:.1f} MB  findings {$CG_N}")
print(f"rg (same regexes):  {rg:.2f} s  {mb/rg:.0f} MB/s  peak RSS {$RG_RSS/1024:.1f} MB  matches {$RG_N}")
print(f"ratio (rg time / childguard time, 1.0 = as fast as rg): {rg/cg:.2f}")
print(f"one thread:         childguard {mb/cg1:.0f} MB/s (peak RSS {$CG1_RSS/1024:.1f} MB), rg {mb/rg1:.0f} MB/s, ratio {rg1/cg1:.2f}")
cgc, rgc, cg1c, rg1c = $CG_CPU, $RG_CPU, $CG1_CPU, $RG1_CPU
print(f"CPU time (user+sys; robust on a busy machine): childguard {cgc:.2f} s = {mb/cgc:.0f} MB/s per CPU-second, rg {rgc:.2f} s = {mb/rgc:.0f} MB/s; one thread: childguard {cg1c:.2f} s, rg {rg1c:.2f} s")
import os
print("load average at the end:", " ".join(f"{x:.1f}" for x in os.getloadavg()))
ok = $CG_RSS/1024 < 200
print("peak memory < 200 MB:", "yes" if ok else "NO")
PY
[ -n "${CHILDGUARD_BENCH_DIR:-}" ] || rm -rf "$WORK"
