#!/usr/bin/env bash
# Every benchmark in one command, and the report docs/BENCHMARKS.md with the machine and date:
#
#   scripts/bench.sh [--quick] [NAME...]
#   scripts/bench.sh --report        (rebuild the report from the kept outputs, run nothing)
#
# NAME is any of ingest-api ingest-webchat ingest-meta ingest-email scale routing pipeline
# dashboard (default: all). Each bench's output is kept in docs/bench/NAME.txt with when, on
# which commit and under what load it ran; the report is rebuilt from those files, so rerunning
# one bench updates its part. `--quick` runs smaller sizes (minutes rather than most of an hour)
# into docs/bench-quick/ and docs/BENCHMARKS-quick.md, so a quick run never replaces the report.
#
# Each bench measures its baseline in the same run (a trivial handler, a direct INSERT, ...):
# on a shared machine the ratios are the figures to trust, not the absolute rates. As root, the
# benches run at real-time priority (chrt -r 10), so other work on a shared machine preempts
# them less; the load average before and after each is recorded either way.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(ingest-api ingest-webchat ingest-meta ingest-email scale routing pipeline dashboard)
quick=0
report_only=0
if [ "${1:-}" = "--report" ]; then
  report_only=1
  shift
fi
if [ "${1:-}" = "--quick" ]; then
  quick=1
  shift
fi
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${all[@]}")

if [ $quick = 1 ]; then
  dir=docs/bench-quick out=docs/BENCHMARKS-quick.md
  ingest=(--rounds 1 --seconds 3 --latency)
  scale=(--conversations 100000 --messages-per 10 --open 10000 --seconds 5)
  events=1000000
else
  dir=docs/bench out=docs/BENCHMARKS.md
  ingest=(--rounds 3 --seconds 5 --latency)
  scale=(--conversations 1000000 --messages-per 10 --open 100000 --seconds 10)
  events=10000000
fi

mkdir -p "$dir"
if [ $report_only = 1 ]; then
  names=()
else
  scripts/install-deps.sh
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/baton/target}"
  cargo bench --locked --no-run
fi

for name in ${names[@]+"${names[@]}"}; do
  case $name in
    ingest-*) args=(ingest -- --channel "${name#ingest-}" "${ingest[@]}") ;;
    scale) args=(scale -- "${scale[@]}") ;;
    routing) args=(routing) ;;
    pipeline) args=(pipeline) ;;
    dashboard) args=(dashboard -- --events "$events" --renders 20) ;;
    *) echo "unknown bench $name (one of: ${all[*]})" >&2 && exit 2 ;;
  esac
  echo "== $name: cargo bench --bench ${args[*]}" >&2
  before=$(cut -d' ' -f1-3 /proc/loadavg)
  started=$(date -u '+%Y-%m-%d %H:%M UTC')
  priority=()
  [ "$(id -u)" -eq 0 ] && command -v chrt >/dev/null && priority=(chrt -r 10)
  "${priority[@]}" cargo bench --locked --bench "${args[@]}" 2>&1 |
    grep -v -E '^\s*(Compiling|Finished|Running|Executable) ' | tee "$dir/$name.out" >&2
  {
    echo "run: $started; commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' with local changes');" \
      "load average before $before, after $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "command: cargo bench --bench ${args[*]}"
    cat "$dir/$name.out"
  } >"$dir/$name.txt"
  rm "$dir/$name.out"
done

section() { # title, name: the bench's output as a block, when it has been run
  echo
  echo "## $1"
  echo
  if [ ! -f "$dir/$2.txt" ]; then
    echo "Not in this report yet (\`scripts/bench.sh $2\`); the README's \"Benchmarks\" section has"
    echo "the latest figures."
    return 0
  fi
  echo '```'
  grep -v -E '^REPORT ' "$dir/$2.txt"
  echo '```'
}

{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh$([ $quick = 1 ] && echo ' --quick')\`: rerun it (or \`scripts/bench.sh NAME\` for one"
  echo "bench) to reproduce. Each bench's full output is below, with when, on which commit and"
  echo "under what load it ran; the README's \"Benchmarks\" section explains each figure and what"
  echo "set its pace."
  echo
  echo "- Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r), a shared VM"
  echo "- $(rustc --version); ClickHouse $(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null | cut -d+ -f1 || echo '?') (Debian's package) on the same machine"
  echo "- Report written: $(date -u '+%Y-%m-%d %H:%M UTC')"
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
  cat "$dir"/ingest-*.txt 2>/dev/null | grep '^REPORT ingest' | sed 's/^REPORT ingest //' || true
  echo
  echo "## Scale: an empty store beside a full one"
  echo
  echo "The release binary on one data folder: API messages (closed loop) on the empty store, then"
  echo "on the store filled in SQL; then one message to each open conversation. Targets: rate and"
  echo "RSS of the full store within 20% of the empty store's; RSS under 200 MB at 100,000 open."
  echo
  echo "| store | empty: rate, RSS | full: rate, RSS | rate full/empty | RSS full/empty | RSS after every open conversation was active |"
  echo "|---|---|---|---|---|---|"
  grep -h '^REPORT scale' "$dir/scale.txt" 2>/dev/null | sed 's/^REPORT scale //' || true
  section "Ingest output (API)" ingest-api
  section "Ingest output (web chat)" ingest-webchat
  section "Ingest output (Meta webhook)" ingest-meta
  section "Ingest output (email)" ingest-email
  section "Scale output" scale
  section "Routing decisions" routing
  section "Events into ClickHouse: shipper beside a direct INSERT" pipeline
  section "Dashboard render, and freshness" dashboard
} >"$out"
echo "wrote $out" >&2
