#!/usr/bin/env bash
# Starts a private PostgreSQL server for tests: its own cluster in DIR (initdb on first use),
# its own port, its Unix socket in DIR, no TCP listener; never the system server.
#
#   scripts/postgres-private.sh DIR PORT [OWNER_PID]
#
# Runs in the foreground until the server stops. With OWNER_PID, stops the server (immediate
# shutdown) and removes DIR once that process is gone: the test binary that started it may be
# killed without a chance to clean up. Installs Debian's postgresql package first when initdb is
# missing. As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
# Durability is off (fsync, synchronous_commit, full_page_writes): test data is thrown away.
set -euo pipefail

dir=${1:?usage: postgres-private.sh DIR PORT [OWNER_PID]}
port=${2:?usage: postgres-private.sh DIR PORT [OWNER_PID]}
owner=${3:-}

find_bin() {
  command -v "$1" 2>/dev/null && return
  ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -1
}
if [ -z "$(find_bin initdb)" ]; then
  echo "initdb not found; installing Debian's postgresql package" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  # The package's own cluster is never used: tests run private servers.
  service postgresql stop >/dev/null 2>&1 || true
fi
initdb=$(find_bin initdb)
postgres=$(find_bin postgres)

run=()
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$dir"
  run=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi

if [ ! -f "$dir/data/PG_VERSION" ]; then
  "${run[@]}" "$initdb" -D "$dir/data" -U baton --auth=trust --no-sync --encoding=UTF8 \
    --locale=C >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
fi

"${run[@]}" "$postgres" -D "$dir/data" -p "$port" -k "$dir" -c listen_addresses='' \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c max_connections=500 -c shared_buffers=64MB -c log_min_messages=warning &
server=$!

if [ -n "$owner" ]; then
  # SIGKILL of the owner cannot be trapped, so watch it instead.
  while kill -0 "$owner" 2>/dev/null && kill -0 "$server" 2>/dev/null; do sleep 1; done
  kill -QUIT "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$dir"
else
  wait "$server"
fi
