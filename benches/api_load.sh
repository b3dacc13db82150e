#!/usr/bin/env bash
# Load on the findings API with 100,000 findings in the store: requests/s and
# p99 latency of a filtered page (target: p99 < 50 ms on a 2-core machine).
#
#   benches/api_load.sh [N_FINDINGS] [DURATION_SECS] [CONNECTIONS]
#
# CHILDGUARD_BIN=path skips the release build and uses that binary.
# Needs: wrk (apt-get install wrk), python3 (sqlite3 module). Builds the
# release binary (CARGO_TARGET_DIR is honoured), starts `childguard serve` on
# a free loopback port with a fresh state dir, seeds the shared store's
# findings table (<state_dir>/childguard.db), then
# runs wrk against an unfiltered first page, a filtered page deep in the
# result set, and the overview.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
DUR=${2:-15}
CONN=${3:-16}
TARGET=${CARGO_TARGET_DIR:-target}
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 2; }

if [ -n "${CHILDGUARD_BIN:-}" ]; then
  BIN=$CHILDGUARD_BIN   # e.g. a debug build, for a quick look
else
  cargo build --release --quiet
  BIN="$TARGET/release/childguard"
fi
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
TOKEN="bench-token-$RANDOM$RANDOM"
HASH=$("$BIN" serve --hash-token "$TOKEN")
cat > "$WORK/childguard.toml" <<TOML
state_dir = "$WORK/state"
[server]
listen = "127.0.0.1:0"
# wrk is one token at thousands of requests/s: no per-token limit here.
rate_limit_per_sec = 0
[[tokens]]
name = "bench"
hash = "$HASH"
role = "viewer"
TOML

start() {
  CHILDGUARD_FINGERPRINT_KEY=bench RUST_LOG=warn "$BIN" serve --config "$WORK/childguard.toml" > "$WORK/out" 2> "$WORK/err" &
  PID=$!
  for _ in $(seq 1 100); do grep -q listening "$WORK/out" 2>/dev/null && break; sleep 0.1; done
  ADDR=$(sed -n 's#listening on http://##p' "$WORK/out")
}
start
# Schema exists now; seed findings directly (masked values and fingerprints only).
kill $PID; wait $PID 2>/dev/null || true
python3 - "$WORK/state/childguard.db" "$N" <<'PY'
import sqlite3, sys, random, hashlib
db, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(7)
c = sqlite3.connect(db)
datasets = ["students", "app_logs", "guardians", "exports", None]
cats = ["cn_resident_id", "cn_mobile", "birth_date", "school_name", "person_name", "address"]
now = "2025-01-01T00:00:00Z"
run = c.execute("INSERT INTO runs(started_at, finished_at, targets, status, stats, summary, run_trigger, started_by) VALUES (?,?,'[\"/srv/data\"]','completed','{}',?,'api','bench')",
                (now, now, '{"findings": %d, "classified": true}' % n)).lastrowid
rows = []
for i in range(n):
    fid = hashlib.sha256(str(i).encode()).hexdigest()[:24]
    ds = rnd.choice(datasets)
    cat = rnd.choice(cats)
    child = rnd.choice([1, 1, 0, None])
    sens = rnd.choice(["high", "medium", "low"])
    st = "open" if rnd.random() < 0.9 else "false_positive"
    path = f"logs/app-{i % 500}.log"
    rows.append((fid, "/srv/data", path, path, i % 10000 + 1, ds, cat, "r." + cat, child, 0.9, "110105********1234",
                 hashlib.sha256(b"fp" + str(i).encode()).hexdigest(), sens, st, now, now, run, run))
c.executemany("INSERT INTO findings(finding_id, target, unit_id, path, line, dataset, category, rule, child, confidence, masked, fingerprint, sensitivity, triage_status, first_seen, last_seen, first_run, last_run) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
c.execute("ANALYZE")
c.commit()
print(f"seeded {n} findings", file=sys.stderr)
PY
start
AUTH="Authorization: Bearer $TOKEN"
run() {
  local name=$1 path=$2
  curl -fsS -H "$AUTH" "http://$ADDR$path" > /dev/null
  local out
  out=$(wrk -t2 -c"$CONN" -d"${DUR}s" --latency -H "$AUTH" "http://$ADDR$path")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '%-34s %10s req/s   p50 %8s   p99 %8s   %s\n' "$name" "$rps" "$p50" "$p99" "${non2xx:+non-2xx: $non2xx}"
}
echo "childguard findings API, $N findings, $CONN connections, ${DUR}s each ($(nproc) cores)"
run "first page (50)" "/api/v1/findings?per_page=50"
run "filtered page 20 (50/page)" "/api/v1/findings?dataset=students&category=cn_resident_id&child=true&status=open&per_page=50&page=20"
run "filtered by severity" "/api/v1/findings?severity=high&status=open&per_page=50&page=5"
run "overview" "/api/v1/overview"
