#!/usr/bin/env bash
# Runs every test: unit tests, black-box tests of the real gateway against a SQLite file and a
# private clickhouse-server 18.16 that the tests start themselves, then the ClickHouse
# migrations and dashboard queries on a current ClickHouse engine (chdb).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --with-chdb
cargo test --locked
python3 scripts/check_modern_clickhouse.py
