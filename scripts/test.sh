#!/usr/bin/env bash
# The one test command (README "Tests"). On a fresh machine it installs and
# starts what the tests need — PostgreSQL, MariaDB, the S3-compatible server
# (moto_server), Chromium and the browser-test driver — then runs every test.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh --test scan_files).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
log() { printf '[test.sh] %s\n' "$*" >&2; }

apt_missing=()
ls /etc/postgresql/*/main >/dev/null 2>&1 || apt_missing+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || apt_missing+=(mariadb-server)
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium)
command -v node >/dev/null 2>&1 || apt_missing+=(nodejs npm)
if [ ${#apt_missing[@]} -gt 0 ]; then
  log "installing ${apt_missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

# PostgreSQL
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
fi
if [ -z "${CHILDGUARD_TEST_PG_URL:-}" ]; then
  if psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    export CHILDGUARD_TEST_PG_URL=postgres://postgres@127.0.0.1:5432/postgres
  else
    # Fresh Debian install: password auth on TCP; give postgres a known test password.
    su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    export CHILDGUARD_TEST_PG_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres
  fi
fi

# MariaDB
if ! mysqladmin -h 127.0.0.1 -P 3306 -u root status >/dev/null 2>&1 && ! mysqladmin status >/dev/null 2>&1; then
  log "starting MariaDB"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  for _ in $(seq 1 60); do mysqladmin status >/dev/null 2>&1 && break; sleep 0.5; done
fi
if [ -z "${CHILDGUARD_TEST_MYSQL_URL:-}" ]; then
  if ! mysql -h 127.0.0.1 -u root -e 'select 1' >/dev/null 2>&1; then
    # Fresh install: root uses the unix socket only; allow TCP with an empty password for tests.
    mysql -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); FLUSH PRIVILEGES;" || true
  fi
  mysql -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test' >/dev/null
  export CHILDGUARD_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test
fi

# S3-compatible server for tests (started per test on a free port).
command -v moto_server >/dev/null 2>&1 || { log "installing moto[server]"; python3 -m pip install -q 'moto[server]'; }
# Azure Blob Storage emulator (Azurite, telemetry off in the tests) and the Azure SDK
# for Python, which only creates the test container (tests/source_cloud.rs).
if [ ! -x tests/emulators/node_modules/.bin/azurite-blob ]; then
  log "installing Azurite"
  (cd tests/emulators && npm install --no-audit --no-fund --silent)
fi
python3 -c 'import azure.storage.blob' 2>/dev/null || { log "installing azure-storage-blob"; python3 -m pip install -q azure-storage-blob; }
# GCS emulator for the gs:// tests (tests/emulators/gcs_server.py launches it).
python3 -c 'import gcp_storage_emulator' 2>/dev/null || { log "installing gcp-storage-emulator"; python3 -m pip install -q gcp-storage-emulator; }
# Second tools that read our outputs back (Parquet export checks).
python3 -c 'import pyarrow' 2>/dev/null || { log "installing pyarrow"; python3 -m pip install -q pyarrow; }

# Browser-test driver (Debian's Chromium; playwright-core never downloads a browser).
if [ -f tests/browser/package.json ] && [ ! -d tests/browser/node_modules ]; then
  log "installing browser-test driver"
  (cd tests/browser && npm install --no-audit --no-fund --silent)
fi

log "running cargo test"
cargo test --locked --no-fail-fast "$@"
