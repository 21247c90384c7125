#!/usr/bin/env bash
# Fuzzes every inbound parser for a fixed time each (default 60 s):
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Targets live in fuzz/fuzz_targets (cargo fuzz, nightly toolchain); each starts from the
# committed corpus in fuzz/corpus/<target> and writes what it discovers to
# target/fuzz-corpus/<target>, so the committed corpus only changes on purpose (copy inputs
# worth keeping, e.g. after `cargo fuzz cmin`). A crash leaves its input in fuzz/artifacts and
# fails the script. Memory is capped (-rss_limit_mb=1024) and inputs at 256 KiB.
#
# Targets are built as Baton ships (`-O`: release, no debug assertions). libFuzzer counts any
# panic as a crash, even one the code catches, and mail-parser 0.11 has a debug assertion that
# fires on a report part outside its multipart (fuzz/regressions/): built as shipped it
# recovers, and Baton wraps the parser in catch_unwind anyway (a unit test runs that input in a
# debug build).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(meta_webhook whatsapp_webhook telegram_webhook twilio_form mime widget_message)
fi

if ! rustup toolchain list | grep -q nightly; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

for t in "${targets[@]}"; do
  out="target/fuzz-corpus/$t"
  mkdir -p "$out"
  echo "== $t: ${seconds} s"
  cargo +nightly fuzz run -O "$t" "$out" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=262144 -print_final_stats=1 2>&1 |
    grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+== ERROR|SUMMARY)" || true
  # cargo fuzz exits non-zero on a crash; the pipe above hides it, so check for artifacts.
  if compgen -G "fuzz/artifacts/$t/*" >/dev/null; then
    echo "$t: crash inputs in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
