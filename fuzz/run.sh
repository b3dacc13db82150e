#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 60): the detector engine,
# the CSV / JSON-lines / Parquet / gzip / zstd readers, GB18030 decoding and
# the config parser. Needs cargo-fuzz (`cargo install cargo-fuzz`); runs on
# a stable toolchain through RUSTC_BOOTSTRAP=1. Corpora grow in
# fuzz/corpus/<target> (seeded from fuzz/seeds/<target>); a crash is kept in
# fuzz/artifacts/<target>/ and makes the script exit 1 — turn it into a
# regression test (tests/robustness_props.rs) before fixing it.
set -uo pipefail
secs=${1:-60}
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
# No sanitizer by default: childguard's own code is safe Rust (two libc calls),
# so AddressSanitizer mostly slows the build of arrow/parquet/sqlx; panics,
# overflow checks, debug assertions, timeouts and the RSS limit still fire.
# FUZZ_SANITIZER=address for a sanitizer run.
san=(-s "${FUZZ_SANITIZER:-none}")
cargo fuzz build -O "${san[@]}" || exit 1
failed=()
for t in $(cargo fuzz list); do
  mkdir -p "corpus/$t" "artifacts/$t"
  dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  echo "== $t (${secs}s)"
  if ! cargo fuzz run -O "${san[@]}" "$t" "${dirs[@]}" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -max_len=262144 -timeout=20 \
      -print_final_stats=1 2>"artifacts/$t/log.txt"; then
    failed+=("$t")
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "artifacts/$t/log.txt" | tail -3
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]} (see fuzz/artifacts/)"
  exit 1
fi
echo "no crash in $(cargo fuzz list | wc -l) targets x ${secs}s"
