#!/usr/bin/env bash
# Installs what Baton's tests and demo need on a fresh Debian machine, when it is missing:
# Debian's clickhouse-server (18.16 on bookworm), Debian's postgresql (15 on bookworm) for the
# black-box suite's run against a private PostgreSQL server, Debian's dovecot-imapd (2.3 on bookworm) and
# aiosmtpd from PyPI for the email tests' private IMAP and SMTP servers, Debian's chromium for
# the dashboard's browser test, and, for the modern-ClickHouse check, chdb from PyPI. Safe to
# run repeatedly.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then
  echo "installing clickhouse-server (Debian package)" >&2
  as_root apt-get update -qq
  # The package's service is never started: tests and the demo run private servers.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server >/dev/null
fi

if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing postgresql (Debian package)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  # Tests run private servers (scripts/postgres-private.sh); the package's cluster is never used.
  as_root service postgresql stop >/dev/null 2>&1 || true
  if [ -d /run/systemd/system ]; then
    as_root systemctl disable --now postgresql.service >/dev/null 2>&1 || true
  fi
fi

if [ ! -x /usr/lib/dovecot/imap ]; then
  echo "installing dovecot-imapd (Debian package)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
  # Tests run private servers (scripts/dovecot-private.sh); the system one is never wanted.
  as_root service dovecot stop >/dev/null 2>&1 || true
  if [ -d /run/systemd/system ]; then
    as_root systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
  fi
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian package)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
  echo "installing aiosmtpd (PyPI)" >&2
  # A Debian-managed python3 refuses plain pip installs (PEP 668); pyenv's and venvs do not.
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check aiosmtpd ||
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --disable-pip-version-check \
      --break-system-packages aiosmtpd
fi

if [ "${1:-}" = "--with-chdb" ] && ! python3 -c "import chdb" >/dev/null 2>&1; then
  echo "installing chdb (PyPI)" >&2
  python3 -m pip install -q --disable-pip-version-check chdb
fi
