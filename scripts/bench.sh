#!/usr/bin/env bash
# Every benchmark in one command; writes docs/BENCHMARKS.md with the machine, the date and each
# bench's own output. `scripts/bench.sh --quick` runs smaller sizes (minutes rather than an
# hour) and writes docs/BENCHMARKS-quick.md instead, so a quick run never replaces the report.
#
# Each bench measures its baseline in the same run (a trivial handler, a direct INSERT, ...):
# on a shared machine the ratios are the figures to trust, not the absolute rates.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/baton/target}"
cargo bench --locked --no-run

logs=$(mktemp -d)
run() { # name, then the bench and its arguments
  local name=$1
  shift
  echo "== $name: cargo bench --bench $*" >&2
  cargo bench --locked --bench "$@" 2>&1 | grep -v -E '^\s*(Compiling|Finished|Running|Executable) ' | tee "$logs/$name.txt" >&2
}

if [ $quick = 1 ]; then
  ingest=(--rounds 1 --seconds 3 --latency)
  out=docs/BENCHMARKS-quick.md
  scale=(--conversations 100000 --messages-per 10 --open 10000 --seconds 5)
  events=1000000
else
  ingest=(--rounds 3 --seconds 5 --latency)
  out=docs/BENCHMARKS.md
  scale=(--conversations 1000000 --messages-per 10 --open 100000 --seconds 10)
  events=10000000
fi

started=$(date -u '+%Y-%m-%d %H:%M UTC')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for channel in api webchat meta email; do
  run "ingest-$channel" ingest -- --channel "$channel" "${ingest[@]}"
done
run scale scale -- "${scale[@]}"
run routing routing
run pipeline pipeline
run dashboard dashboard -- --events "$events" --renders 20
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

section() { # title, log name: the bench's output without its progress lines
  echo
  echo "## $1"
  echo
  echo '```'
  grep -v -E '^(REPORT|machine:)' "$logs/$2.txt" || true
  echo '```'
}

{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh$([ $quick = 1 ] && echo ' --quick')\` (rerun it to reproduce;"
  echo "the README's \"Benchmarks\" section explains each figure and what set its pace)."
  echo
  echo "- Date: $started"
  echo "- Commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with local changes)')"
  echo "- Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r)"
  echo "- Load average (1/5/15 min) before: $load_before; after: $load_after"
  echo "- $(rustc --version); ClickHouse $(clickhouse-server --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1 || echo '?') on the same machine"
  echo
  echo "## Ingest: messages through the whole pipeline, beside a trivial handler"
  echo
  echo "Closed loop, 64 connections, alternating rounds against the gateway and a trivial 200-OK"
  echo "handler (medians); then an open loop at 50% and 90% of the sustainable maximum (the lower"
  echo "of the acknowledgement rate and the bot's answer rate), latency counted from when each"
  echo "request was due. Targets: API at least 50% of the trivial handler; p99 ack under 10 ms at"
  echo "50% load."
  echo
  echo "| channel | rounds | trivial handler | gateway | ratio | sustainable max | ack p50 / p99 / p99.9 at 50% | at 90% |"
  echo "|---|---|---|---|---|---|---|---|"
  cat "$logs"/ingest-*.txt | grep '^REPORT ingest' | sed 's/^REPORT ingest //'
  echo
  echo "## Scale: an empty store beside a full one"
  echo
  echo "The release binary on one data folder: API messages (closed loop) on the empty store, then"
  echo "on the store filled in SQL; then one message to each open conversation. Targets: rate and"
  echo "RSS of the full store within 20% of the empty store's; RSS under 200 MB at 100,000 open."
  echo
  echo "| store | empty: rate, RSS | full: rate, RSS | rate full/empty | RSS full/empty | RSS after every open conversation was active |"
  echo "|---|---|---|---|---|---|"
  grep '^REPORT scale' "$logs/scale.txt" | sed 's/^REPORT scale //'
  section "Ingest output (API)" ingest-api
  section "Ingest output (web chat)" ingest-webchat
  section "Ingest output (Meta webhook)" ingest-meta
  section "Ingest output (email)" ingest-email
  section "Scale output" scale
  section "Routing decisions" routing
  section "Events into ClickHouse: shipper beside a direct INSERT" pipeline
  section "Dashboard render over $events events, and freshness" dashboard
} >"$out"
echo "wrote $out" >&2
