#!/usr/bin/env bash
# Validates docker-compose.yml with Docker Compose's own parser (`docker compose config`), as
# CI cannot run containers here. Uses Compose v2 when the docker CLI has it, else Debian's
# docker-compose 1.29 (installed when missing), which reads the same Compose specification.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  if ! command -v docker-compose >/dev/null 2>&1; then
    echo "installing docker-compose (Debian package)" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
  fi
  compose=(docker-compose)
fi

# The admin token is mandatory: without it the file must not validate.
if env -u BATON_API_TOKEN "${compose[@]}" -f docker-compose.yml config -q 2>/dev/null; then
  echo "docker-compose.yml validated without BATON_API_TOKEN; it must require it" >&2
  exit 1
fi
BATON_API_TOKEN=compose-check "${compose[@]}" -f docker-compose.yml config -q
echo "docker-compose.yml: valid ($("${compose[@]}" version --short 2>/dev/null || echo compose))"
