#!/usr/bin/env bash
# Build PostgreSQL 15 + TimescaleDB (Apache edition) into a cached, relocatable prefix.
#
# No package registry reachable from a stock Debian 12 machine serves a TimescaleDB binary, so we
# build Debian's own source package against the server binaries of one PostgreSQL 15 version.
# Everything goes through a *private* apt configuration (its own sources list, lists, cache and
# status) that reuses the machine's configured Debian mirror; the system's apt state is untouched.
#
# The result is cached under ${XDG_CACHE_HOME:-~/.cache}/rtm/, keyed by both versions, so later
# runs, other clones and CI on the same machine skip the build. Prints the prefix on stdout.
set -euo pipefail

PG_MAJOR="${RTM_PG_MAJOR:-15}"
TS_VERSION="${RTM_TIMESCALEDB_VERSION:-2.19.3}"
TS_SUITE="${RTM_TIMESCALEDB_SUITE:-trixie}"
# The cluster runs as the unprivileged postgres user, which must be able to read the binaries:
# as root, cache under /var/cache (a root home is usually private).
if [ "$(id -u)" = 0 ]; then default_cache=/var/cache/rtm; else default_cache="${XDG_CACHE_HOME:-$HOME/.cache}/rtm"; fi
CACHE_ROOT="${RTM_CACHE_DIR:-$default_cache}"

log() { echo "[timescaledb] $*" >&2; }

# The machine's Debian mirror, read from its own apt configuration (deb822 or one-line format).
debian_mirror() {
  local uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
      /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' \
      /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { log "cannot find a Debian mirror in /etc/apt"; exit 1; }
  echo "$uri"
}

# Installed server version decides which client/server/dev packages we fetch (all one version).
PG_VERSION=$(dpkg-query -W -f='${Version}' "postgresql-${PG_MAJOR}" 2>/dev/null || true)
if [ -z "$PG_VERSION" ]; then
  log "postgresql-${PG_MAJOR} is not installed; installing it from the system's apt sources"
  apt-get install -y -q "postgresql-${PG_MAJOR}" >&2
  PG_VERSION=$(dpkg-query -W -f='${Version}' "postgresql-${PG_MAJOR}")
fi

KEY="pg${PG_VERSION}-ts${TS_VERSION}"
PREFIX="$CACHE_ROOT/$KEY"
PG_BIN="$PREFIX/usr/lib/postgresql/$PG_MAJOR/bin"
if [ -f "$PREFIX/.complete" ]; then
  echo "$PREFIX"
  exit 0
fi

log "building $KEY into $PREFIX (one-off, about a minute or two)"
for tool in cmake gcc make; do
  command -v "$tool" >/dev/null || { apt-get update -q >&2; apt-get install -y -q cmake gcc make >&2; break; }
done

mkdir -p "$CACHE_ROOT"
WORK=$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
APT="$WORK/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/prefs.d" "$WORK/debs" "$WORK/src"
: > "$APT/status"
MIRROR=$(debian_mirror)
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
cat > "$APT/sources.list" <<EOF
deb [signed-by=$KEYRING] $MIRROR bookworm main
deb [signed-by=$KEYRING] $MIRROR bookworm-updates main
deb-src [signed-by=$KEYRING] $MIRROR $TS_SUITE main
EOF
APT_OPTS=(
  -o "Dir::Etc::SourceList=$APT/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::Etc::PreferencesParts=$APT/prefs.d" -o "Dir::State::Lists=$APT/lists"
  -o "Dir::State::Status=$APT/status" -o "Dir::Cache=$APT/cache" -o "APT::Sandbox::User=root"
  -q
)
apt-get "${APT_OPTS[@]}" update >&2
# The security suite carries the newest point release; take each package at the installed version.
(
  cd "$WORK/debs"
  for pkg in "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR" libpq-dev; do
    apt-get "${APT_OPTS[@]}" download "$pkg=$PG_VERSION" >&2 || {
      # The machine's version may only be in the security suite: add it and retry once.
      sec=$(awk '/^URIs:/ && /security/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
      [ -n "$sec" ] || exit 1
      grep -q bookworm-security "$APT/sources.list" || {
        echo "deb [signed-by=$KEYRING] $sec bookworm-security main" >> "$APT/sources.list"
        apt-get "${APT_OPTS[@]}" update >&2
      }
      apt-get "${APT_OPTS[@]}" download "$pkg=$PG_VERSION" >&2
    }
  done
)
mkdir -p "$PREFIX.tmp"
for deb in "$WORK"/debs/*.deb; do dpkg -x "$deb" "$PREFIX.tmp"; done

(
  cd "$WORK/src"
  apt-get "${APT_OPTS[@]}" source --download-only "timescaledb=$TS_VERSION" >&2 \
    || apt-get "${APT_OPTS[@]}" source --download-only timescaledb >&2
  orig=$(ls timescaledb_*.orig.tar.* | head -n 1)
  tar -xf "$orig"
)
SRC=$(find "$WORK/src" -maxdepth 1 -mindepth 1 -type d | head -n 1)
PG_CONFIG="$PREFIX.tmp/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
(
  cd "$SRC"
  cmake -S . -B build -DAPACHE_ONLY=1 -DPG_CONFIG="$PG_CONFIG" -DREGRESS_CHECKS=OFF \
    -DTAP_CHECKS=OFF -DUSE_TELEMETRY=OFF -DWARNINGS_AS_ERRORS=OFF -DCMAKE_BUILD_TYPE=Release >&2
  cmake --build build -j "$(nproc)" >&2
  cmake --install build >&2
)
touch "$PREFIX.tmp/.complete"
rm -rf "$PREFIX"
mv "$PREFIX.tmp" "$PREFIX"
log "done: $PG_BIN"
echo "$PREFIX"
