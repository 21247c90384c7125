#!/usr/bin/env bash
# Runs Baton with demo data at http://127.0.0.1:8080 (the chat widget on /, the dashboard on
# /dashboard). Installs clickhouse-server if missing, starts a private one under the data
# folder, builds Baton and runs `baton serve --demo`. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

data=${BATON_DATA_DIR:-./data}
ch_port=${BATON_DEMO_CLICKHOUSE_PORT:-18123}
bind=${BATON_BIND:-127.0.0.1:8080}
mkdir -p "$data"

scripts/install-deps.sh
scripts/clickhouse-private.sh "$data/clickhouse" "$ch_port" >"$data/clickhouse.out" 2>&1 &
ch_pid=$!
trap 'kill "$ch_pid" 2>/dev/null || true' EXIT

ready=""
for _ in $(seq 1 300); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$ch_port" && printf 'GET /ping HTTP/1.0\r\n\r\n' >&3 && grep -q "Ok." <&3) 2>/dev/null; then
    ready=1; break
  fi
  sleep 0.2
done
[ -n "$ready" ] || { echo "clickhouse-server did not start; see $data/clickhouse.out" >&2; exit 1; }

cargo build --release --locked
echo
echo "Baton demo: http://$bind/  (dashboard: http://$bind/dashboard)"
echo "Admin token (sign in to the dashboard with it): see $data/admin-token once the server is up."
echo "Demo agents' tokens: $data/demo-agent-tokens.tsv"
echo
./target/release/baton serve --demo --bind "$bind" --data-dir "$data" --clickhouse-url "http://127.0.0.1:$ch_port"
