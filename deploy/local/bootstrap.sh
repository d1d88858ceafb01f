#!/usr/bin/env bash
# Idempotent set-up of everything the project needs on a fresh Debian 12 machine:
# system packages, the virtual environment at .venv/ with the project installed, and the cached
# PostgreSQL + TimescaleDB build. Re-running it is cheap: each step checks before it works.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
mkdir -p .state
log() { echo "[setup] $*" >&2; }

# --- system packages (build tools for the TimescaleDB extension, the PostgreSQL 15 server; chromium
# for the clinic app's browser tests) -------------------------------------------------------------
need=()
for pkg in postgresql-15 cmake gcc make python3-venv util-linux chromium; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages: ${need[*]} (install them as root, then re-run)"; exit 1
  fi
  log "installing Debian packages: ${need[*]}"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi

# --- the virtual environment ------------------------------------------------------------------------
PY=${RTM_PYTHON:-python3}
stamp=".venv/.rtm-installed"
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing the project and its dependencies into .venv (log: .state/setup.log)"
  mkdir -p .state
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[dev]"; } \
      > .state/setup.log 2>&1; then
    tail -n 40 .state/setup.log >&2
    log "pip install failed"; exit 1
  fi
  echo "$want" > "$stamp"
fi

# --- PostgreSQL + TimescaleDB (cached outside the clone) ----------------------------------------
bash deploy/local/build_timescaledb.sh > /dev/null 2> .state/timescaledb-build.log || {
  tail -n 40 .state/timescaledb-build.log >&2; log "TimescaleDB build failed"; exit 1; }
log "ready: .venv/bin/rtm"
