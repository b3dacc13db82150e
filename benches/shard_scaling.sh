#!/usr/bin/env bash
# Scale-out benchmark (issue 9): the same generated estate scanned by 1, 2
# and 4 `childguard scan --shard K/N` processes at once (one thread each),
# all writing to one PostgreSQL store. Prints wall time, speed-up over one
# shard, units and findings per shard, and the single-shard throughput per
# core (MB/s of text, rows/s of tables) that deploy/SIZING.md is built on.
#
# Estate: 96 log files of ~1.5 MB, one 48 MB log (split into 16 MB byte
# ranges), one PostgreSQL table of 400,000 rows (read with --full, split into
# key ranges of 100,000) and 40 small tables.
# Takes ~5 minutes on the 2-core development machine (the dense estate makes
# the store writes dominate; see deploy/SIZING.md).
# Usage: benches/shard_scaling.sh [PG_ADMIN_URL]   (default postgres://postgres@127.0.0.1:5432/postgres)
#        CHILDGUARD_BIN=path/to/release/childguard benches/shard_scaling.sh   (no build)
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN=${1:-${CHILDGUARD_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
BASE=${ADMIN%/*}
SRC=cg_bench_shard_src_$$
STORE=cg_bench_shard_store_$$
WORK=$(mktemp -d)
cleanup() {
  psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $SRC" -c "DROP DATABASE IF EXISTS $STORE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # runs the EXIT trap on Ctrl-C / timeout too

# CHILDGUARD_BIN: an already built release binary (skips the build).
BIN=${CHILDGUARD_BIN:-}
if [ -z "$BIN" ]; then
  cargo build -q --release --bin childguard
  BIN=${CARGO_TARGET_DIR:-target}/release/childguard
fi
export CHILDGUARD_STATE_DIR=$WORK/state CHILDGUARD_FINGERPRINT_KEY=bench
now() { date +%s.%N; }

echo "generating the estate in $WORK …"
python3 - "$WORK/files" <<'PY'
import os, sys
root = sys.argv[1]
os.makedirs(os.path.join(root, "logs"), exist_ok=True)
W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
def rid(year, i):
    body = f"110105{year}{1 + i % 12:02d}{1 + i % 28:02d}{i % 1000:03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, W)) % 11]
def line(i):
    if i % 20 == 0:
        return f"2025-01-02 10:00:{i % 60:02d} signup student id={rid(2015, i)} guardian {'138%08d' % (i % 10**8)}\n"
    if i % 20 == 1:
        return f"2025-01-02 10:00:{i % 60:02d} staff login id={rid(1980, i)}\n"
    return f"2025-01-02 10:00:{i % 60:02d} INFO GET /api/v1/orders/{i} 200 in {i % 97} ms user_agent=Mozilla/5.0\n"
def write(path, start, n):
    with open(path, "w") as f:
        f.write("".join(line(start + i) for i in range(n)))
for k in range(96):
    write(os.path.join(root, f"logs/app-{k:03d}.log"), k * 20000, 20000)
write(os.path.join(root, "logs/huge.log"), 10**7, 640000)
PY
psql -q "$ADMIN" -c "CREATE DATABASE $SRC" -c "CREATE DATABASE $STORE"
psql -q "$BASE/$SRC" <<'SQL'
CREATE FUNCTION cg_id(base text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT base || substr('10X98765432', (sum(substr(base, i::int, 1)::int * w) % 11)::int + 1, 1)
  FROM unnest(ARRAY[7,9,10,5,8,4,2,1,6,3,7,9,10,5,8,4,2]) WITH ORDINALITY AS t(w, i) $$;
CREATE TABLE students (id bigint PRIMARY KEY, name text, sfzh varchar(18), phone varchar(11), note text);
INSERT INTO students
SELECT g, '学生' || g,
       cg_id('110105' || to_char(date '1975-01-01' + (g % 15000), 'YYYYMMDD') || lpad((g % 1000)::text, 3, '0')),
       '138' || lpad((g % 100000000)::text, 8, '0'), 'order ' || g
FROM generate_series(1, 400000) g;
DO $$ BEGIN
  FOR t IN 1..40 LOOP
    EXECUTE format('CREATE TABLE contacts_%s AS SELECT g AS id, %L || g AS note FROM generate_series(1, 500) g', t, 'guardian 13900000');
  END LOOP;
END $$;
ANALYZE;
SQL
FILE_MB=$(du -sm "$WORK/files" | cut -f1)
echo "estate: ${FILE_MB} MB of logs, 400,000 + 40 x 500 table rows"
printf 'state_url = "%s/%s"\n' "$BASE" "$STORE" > "$WORK/c.toml"

T1=
for N in 1 2 4; do
  psql -q "$BASE/$STORE" -c "DROP TABLE IF EXISTS _sqlx_migrations, runs, work_units, findings, violations, audit_log, leases, work_items CASCADE" >/dev/null 2>&1 || true
  pids=()
  t=$(now)
  for ((k = 0; k < N; k++)); do
    "$BIN" scan "$WORK/files" "$BASE/$SRC" --config "$WORK/c.toml" --full --threads 1 \
      --range-bytes $((16 << 20)) --range-rows 100000 --shard "$k/$N" --run-group "bench-$N" \
      --format jsonl --output "$WORK/out-$N-$k.jsonl" 2>"$WORK/err-$N-$k.txt" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  wall=$(echo "$(now) - $t" | bc -l)
  [ -z "$T1" ] && T1=$wall
  findings=$(cat "$WORK"/out-$N-*.jsonl | wc -l)
  # The summary line (`scanned N unit(s) …`); warnings may come before it.
  per=$(for ((k = 0; k < N; k++)); do grep -m1 -E '^scanned [0-9]+ unit' "$WORK/err-$N-$k.txt" | sed -E 's/^scanned ([0-9]+) unit.*/\1/'; done | paste -sd/)
  printf 'shards=%d  wall=%6.2f s  speed-up=%4.2fx  units per shard=%s  findings=%d  (%.0f findings/s into the store)\n' \
    "$N" "$wall" "$(echo "$T1 / $wall" | bc -l)" "$per" "$findings" "$(echo "$findings / $wall" | bc -l)"
  if [ "$N" = 1 ]; then
    rows=$(psql -Atq "$BASE/$STORE" -c "SELECT (stats::json->>'rows') FROM runs ORDER BY id DESC LIMIT 1")
    stored=$(psql -Atq "$BASE/$STORE" -c "SELECT count(*) FROM findings")
    printf '  one core: %.1f MB/s of text and rows together; %d rows, %d findings stored\n' \
      "$(echo "$FILE_MB / $wall" | bc -l)" "$rows" "$stored"
    # Files alone and the table alone, one core, no store: the per-core figures of SIZING.md.
    t=$(now); "$BIN" scan "$WORK/files" --threads 1 --range-bytes 0 --format jsonl --output /dev/null 2>/dev/null
    fw=$(echo "$(now) - $t" | bc -l)
    t=$(now); "$BIN" scan "$BASE/$SRC" --full --threads 1 --range-rows 0 --format jsonl --output /dev/null 2>/dev/null
    tw=$(echo "$(now) - $t" | bc -l)
    printf '  files only: %.1f MB/s per core;  tables only (--full): %.0f rows/s per core\n' \
      "$(echo "$FILE_MB / $fw" | bc -l)" "$(echo "420000 / $tw" | bc -l)"
  fi
done
echo "note: the machine has $(nproc) core(s); speed-up beyond that is not possible here."
