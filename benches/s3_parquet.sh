#!/usr/bin/env bash
# Parquet on an S3-compatible server (issue 4): a 2,000,000-row Parquet object
# on a loopback moto_server, scanned with `childguard scan s3://…` (ranged
# reads of the footer and the needed columns), next to DuckDB reading the
# same file and regex-matching the same columns (ID number, mobile, name).
# DuckDB reads the file from local disk: its httpfs extension cannot be
# installed without network access, so the ratio also carries our S3 I/O.
# Needs: moto_server, python3 with pyarrow and boto3 (moto ships it); duckdb (pip) optional.
# Usage: benches/s3_parquet.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-2000000}
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
moto_server -H 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null; rm -rf "$WORK"' EXIT
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT=http://127.0.0.1:$PORT AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false
export CHILDGUARD_STATE_DIR=$WORK/state CHILDGUARD_FINGERPRINT_KEY=bench

cargo build -q --release --bin childguard
BIN=${CARGO_TARGET_DIR:-target}/release/childguard

python3 - "$ROWS" "$WORK/students.parquet" <<'PY'
import sys, datetime, pyarrow as pa, pyarrow.parquet as pq
n, out = int(sys.argv[1]), sys.argv[2]
W = [7,9,10,5,8,4,2,1,6,3,7,9,10,5,8,4,2]; C = "10X98765432"
base = datetime.date(1975, 1, 1)
def rid(i):
    s = "110105" + (base + datetime.timedelta(days=i % 15000)).strftime("%Y%m%d") + "%03d" % (i % 1000)
    return s + C[sum(int(d) * w for d, w in zip(s, W)) % 11]
t = pa.table({
    "id": pa.array(range(n), pa.int64()),
    "name": pa.array(["学生%d" % i for i in range(n)]),
    "sfzh": pa.array([rid(i) for i in range(n)]),
    "phone": pa.array(["138%08d" % i for i in range(n)]),
    "amount": pa.array([i * 0.5 for i in range(n)]),
})
pq.write_table(t, out, row_group_size=128 * 1024, compression="snappy")
PY
python3 - "$PORT" "$WORK/students.parquet" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:%s" % sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket="bench")
s3.upload_file(sys.argv[2], "bench", "exports/students.parquet")
PY
SIZE=$(stat -c %s "$WORK/students.parquet")
now() { date +%s.%N; }
t=$(now)
"$BIN" scan s3://bench/exports/ --format jsonl --output "$WORK/findings.jsonl" 2>"$WORK/summary.txt"
CG=$(echo "$(now) - $t" | bc)
echo "childguard: $(head -n1 "$WORK/summary.txt")"
printf 'childguard scan of s3://bench/exports/students.parquet (%s rows, %s bytes): %.2f s\n' "$ROWS" "$SIZE" "$CG"
if python3 -c 'import duckdb' 2>/dev/null; then
  DK=$(python3 - "$WORK/students.parquet" <<'PY'
import sys, time, duckdb
t = time.time()
r = duckdb.sql(r"""SELECT count(*) FILTER (WHERE regexp_matches(sfzh, '\d{17}[\dXx]')),
                          count(*) FILTER (WHERE regexp_matches(phone, '1[3-9]\d{9}')),
                          count(*) FILTER (WHERE regexp_matches(name, '\d{11,18}'))
                   FROM read_parquet('%s')""" % sys.argv[1]).fetchall()
print("%.3f" % (time.time() - t))
PY
)
  printf 'DuckDB read_parquet + regexp_matches on the same columns (local file): %.2f s; ratio childguard/DuckDB %.2fx\n' "$DK" "$(echo "$CG / $DK" | bc -l)"
else
  echo "duckdb (python) not installed: pip install duckdb for the comparison"
fi
