#!/usr/bin/env bash
# Retention sweep benchmark.
#
# 1. PostgreSQL: childguard deletes 1,000,000 expired rows of a 2,000,000-row
#    table (keyset batches, each a short transaction that re-checks the
#    predicate, journaled before and after in the SQLite state store) and, in
#    the same run, one plain `DELETE … WHERE` removes the same rows from an
#    identical copy. Prints both times, the ratio (target ≤ 1.5x) and the
#    longest batch transaction (target ≤ 250 ms).
# 2. Parquet: childguard rewrites a 2,000,000-row file without its expired
#    half (read, filter, write temp, re-read + verify, fsync, rename) vs
#    DuckDB `COPY (SELECT … WHERE …) TO …` on the same file (needs
#    `pip install duckdb`; skipped when missing).
#
# Usage: benches/sweep_delete.sh   (env: CHILDGUARD_BENCH_PG_URL, CHILDGUARD_BIN, ROWS,
#        SWEEP_FLAGS e.g. "--target-batch-ms 150", KEEP=1 to keep the data)
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${CHILDGUARD_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
ROWS=${ROWS:-2000000}
if [ -z "${CHILDGUARD_BIN:-}" ]; then
  cargo build --release --bin childguard >&2
  BIN=${CARGO_TARGET_DIR:-target}/release/childguard
else
  BIN=$CHILDGUARD_BIN
fi
WORK=$(mktemp -d)
DB=cg_bench_$$
URL=${PG%/*}/$DB
cleanup() {
  if [ -n "${KEEP:-}" ]; then echo "kept: $WORK, database $DB"; return; fi
  psql -q "$PG" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true; rm -rf "$WORK"
}
trap cleanup EXIT
now() { date +%s.%N; }

echo "== PostgreSQL: $ROWS rows, half expired (interleaved ids)"
psql -q "$PG" -c "CREATE DATABASE $DB"
psql -q "$URL" >/dev/null <<SQL
CREATE TABLE events (id BIGINT PRIMARY KEY, user_id TEXT NOT NULL, phone TEXT, created_at TIMESTAMP NOT NULL);
INSERT INTO events SELECT g, 'u' || g, '138' || lpad(g::text, 8, '0'),
  CASE WHEN g % 2 = 0 THEN TIMESTAMP '2024-01-01' + (g % 1440) * INTERVAL '1 minute' ELSE TIMESTAMP '2025-03-15' END
FROM generate_series(1, $ROWS) g;
CREATE INDEX events_created_at ON events (created_at);
CREATE TABLE events_copy (LIKE events INCLUDING ALL);
INSERT INTO events_copy SELECT * FROM events;
VACUUM ANALYZE events; VACUUM ANALYZE events_copy;
CHECKPOINT;
SQL

t0=$(now)
psql -q "$URL" -c "DELETE FROM events_copy WHERE created_at < TIMESTAMP '2025-03-01'" >/dev/null
t1=$(now)
plain=$(echo "$t1 - $t0" | bc -l)
psql -q "$URL" -c "CHECKPOINT" >/dev/null

mkdir -p "$WORK/s"
cat > "$WORK/s/childguard.toml" <<TOML
[[datasets]]
name = "events"
source = "$URL"
match = ["events"]
retention = "30d after created_at"
TOML
export CHILDGUARD_STATE_DIR=$WORK/s/.state CHILDGUARD_FINGERPRINT_KEY=bench
cd "$WORK/s"
plan=$("$BIN" sweep plan --as-of 2025-03-31 --as planner --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$BIN" sweep approve "$plan" --by approver >/dev/null
t0=$(now)
res=$("$BIN" sweep run "$plan" --json ${SWEEP_FLAGS:-})
t1=$(now)
cd - >/dev/null
cg=$(echo "$t1 - $t0" | bc -l)
left=$(psql -qtA "$URL" -c "SELECT count(*) FROM events WHERE created_at < '2025-03-01'")
kept=$(psql -qtA "$URL" -c "SELECT count(*) FROM events")
kept_copy=$(psql -qtA "$URL" -c "SELECT count(*) FROM events_copy")
python3 - "$plain" "$cg" "$res" "$left" "$kept" "$kept_copy" <<'PY'
import json, sys
plain, cg, res, left, kept, kept_copy = float(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
print(f"plain DELETE … WHERE:        {plain:8.2f} s")
print(f"childguard sweep run:        {cg:8.2f} s  ({res['disposed']} rows, status {res['status']})")
print(f"ratio:                       {cg/plain:8.2f}x  (target <= 1.5x)")
print(f"max batch transaction:       {res['max_batch_ms']:8.1f} ms (target <= 250 ms)")
print(f"expired left: {left}; rows kept: {kept} (copy: {kept_copy})")
assert left == "0" and kept == kept_copy, "sweep result differs from the plain DELETE"
PY

echo "== Parquet: $ROWS rows, half expired"
if python3 -c "import duckdb" 2>/dev/null; then
  mkdir -p "$WORK/p/data"
  python3 - "$WORK/p/data/events.parquet" "$ROWS" <<'PY'
import duckdb, sys
duckdb.sql(f"""COPY (SELECT g AS id, 'u' || g AS user_id, '138' || lpad(g::VARCHAR, 8, '0') AS phone,
  CASE WHEN g % 2 = 0 THEN TIMESTAMP '2024-01-01' ELSE TIMESTAMP '2025-03-15' END AS created_at
  FROM range(1, {int(sys.argv[2])} + 1) t(g)) TO '{sys.argv[1]}' (FORMAT parquet, COMPRESSION snappy)""")
PY
  cp "$WORK/p/data/events.parquet" "$WORK/p/copy.parquet"
  ls -l "$WORK/p/data/events.parquet" | awk '{print "file bytes:", $5}'
  duck=$(python3 - "$WORK/p/copy.parquet" "$WORK/p/duck_out.parquet" <<'PY'
import duckdb, sys, time
con = duckdb.connect()
con.execute("SET threads TO 1")
t = time.time()
con.execute(f"COPY (SELECT * FROM '{sys.argv[1]}' WHERE created_at IS NULL OR created_at >= TIMESTAMP '2025-03-01') TO '{sys.argv[2]}' (FORMAT parquet, COMPRESSION snappy)")
print(time.time() - t)
PY
)
  cat > "$WORK/p/childguard.toml" <<TOML
[[datasets]]
name = "events"
source = "$WORK/p/data"
retention = "30d after created_at"
TOML
  export CHILDGUARD_STATE_DIR=$WORK/p/.state
  cd "$WORK/p"
  plan=$("$BIN" sweep plan --as-of 2025-03-31 --as planner --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  "$BIN" sweep approve "$plan" --by approver >/dev/null
  t0=$(now)
  res=$("$BIN" sweep run "$plan" --json)
  t1=$(now)
  cd - >/dev/null
  cgp=$(echo "$t1 - $t0" | bc -l)
  python3 - "$duck" "$cgp" "$res" "$WORK/p/data/events.parquet" "$WORK/p/duck_out.parquet" <<'PY'
import duckdb, json, sys
duck, cg, res = float(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
a = duckdb.sql(f"SELECT count(*) FROM '{sys.argv[4]}'").fetchall()[0][0]
b = duckdb.sql(f"SELECT count(*) FROM '{sys.argv[5]}'").fetchall()[0][0]
print(f"DuckDB COPY (SELECT … WHERE) (1 thread): {duck:6.2f} s")
print(f"childguard rewrite+verify+swap:          {cg:6.2f} s  ({res['disposed']} rows removed, status {res['status']})")
print(f"ratio:                                   {cg/duck:6.2f}x")
print(f"rows after: childguard {a}, DuckDB {b}")
assert a == b
PY
else
  echo "duckdb not installed (pip install duckdb): Parquet comparison skipped"
fi
