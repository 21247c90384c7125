#!/usr/bin/env bash
# Installs what Baton's tests and demo need on a fresh Debian machine, when it is missing:
# Debian's clickhouse-server (18.16 on bookworm) and, for the modern-ClickHouse check, chdb
# from PyPI. Safe to run repeatedly.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then
  echo "installing clickhouse-server (Debian package)" >&2
  as_root apt-get update -qq
  # The package's service is never started: tests and the demo run private servers.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server >/dev/null
fi

if [ "${1:-}" = "--with-chdb" ] && ! python3 -c "import chdb" >/dev/null 2>&1; then
  echo "installing chdb (PyPI)" >&2
  python3 -m pip install -q --disable-pip-version-check chdb
fi
