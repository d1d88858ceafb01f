# CloudNativePG's PostgreSQL 15 image with TimescaleDB added from Timescale's Debian repository.
# docker build -f timescaledb-cnpg.Dockerfile -t rtm-timescaledb-cnpg:15-2.19.3 .
FROM ghcr.io/cloudnative-pg/postgresql:15.10-bookworm
USER root
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
    && curl -fsSL https://packagecloud.io/timescale/timescaledb/gpgkey \
       | gpg --dearmor -o /usr/share/keyrings/timescaledb.gpg \
    && echo "deb [signed-by=/usr/share/keyrings/timescaledb.gpg] https://packagecloud.io/timescale/timescaledb/debian/ bookworm main" \
       > /etc/apt/sources.list.d/timescaledb.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends "timescaledb-2-postgresql-15=2.19.3~debian12" \
    && apt-get purge -y curl gnupg && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*
USER 26
