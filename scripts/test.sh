#!/usr/bin/env bash
# Runs every test: unit tests, black-box tests of the real gateway against a SQLite file and a
# private clickhouse-server 18.16 that the tests start themselves, the same black-box tests
# again with the store in a private PostgreSQL server (BATON_TEST_STORE=postgres; the
# multi-instance tests run only then), then the ClickHouse migrations and dashboard queries on
# a current ClickHouse engine (chdb).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh --with-chdb
cargo test --locked
BATON_TEST_STORE=postgres cargo test --locked --test api
python3 scripts/check_modern_clickhouse.py
