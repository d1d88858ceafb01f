"""Settings shared by every part, read from RTM_* environment variables with local defaults.

The defaults describe the embedded development stack (`rtm up`): everything on 127.0.0.1, state
in `.state/` at the project root. Production overrides them through the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTM_", extra="ignore")

    # "production" refuses to start without its secrets and never falls back to the local stack's
    # generated ones (`rtm.production`); "local" is the embedded development stack.
    environment: Literal["local", "production"] = "local"
    state_dir: Path = Field(default=PROJECT_ROOT / ".state", description="logs, data and local secrets")
    shared_data_dir: Path = Field(default=PROJECT_ROOT.parent / "shared" / "data")

    # --- database -------------------------------------------------------------------------------
    pg_host: str = "127.0.0.1"
    pg_port: int = 55432
    pg_database: str = "rtm"
    # Roles: the owner runs migrations; the writer is what processors and the gateway use; the
    # reader is for dashboards and billing. Passwords come from the environment or, on the local
    # stack, from files that `rtm up` generates in the state folder (never from the repository).
    pg_owner_user: str = "rtm_owner"
    pg_writer_user: str = "rtm_writer"
    pg_reader_user: str = "rtm_reader"
    # The clinic web app (dashboards/): every request runs under row-level security with its clinic set.
    pg_app_user: str = "rtm_app"
    pg_owner_password: str | None = None
    pg_writer_password: str | None = None
    pg_reader_password: str | None = None
    # A superuser, only for `rtm provision database` (roles, database, extension) in production.
    pg_admin_user: str = "postgres"
    pg_admin_password: str | None = None
    pg_admin_database: str = "postgres"
    # libpq's sslmode: "verify-full" with the server's CA in production; the local stack has no TLS.
    pg_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    pg_sslrootcert: Path | None = None
    pg_app_password: str | None = None
    pg_pool_max: int = 8
    # How long a worker waits for a database connection before it counts as a failure and backs off.
    pg_connect_timeout_s: float = 5.0

    # --- broker ---------------------------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:59092"
    # "tansu" enables the workarounds for the embedded development broker; "kafka" for Apache Kafka.
    broker_flavour: Literal["tansu", "kafka"] = "tansu"
    kafka_idempotent_producer: bool = False  # Tansu cannot InitProducerId; enable on real Kafka
    kafka_session_timeout_ms: int = 3000  # a group join takes half of it on Tansu: keep it short
    kafka_heartbeat_interval_ms: int = 1000
    topic_replication: int = 1
    # TLS to the brokers: "SSL" with the cluster's CA (and a client certificate for mutual TLS).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL"] = "PLAINTEXT"
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # --- processors -----------------------------------------------------------------------------
    app_id: str = "rtm-processors"  # the consumer group; tests use their own
    worker_web_port: int = 6066
    # Loopback on a development machine; 0.0.0.0 in a container, so that probes and Prometheus reach it.
    worker_web_host: str = "127.0.0.1"
    sink_batch_max: int = 500
    sink_flush_interval_s: float = 0.2
    # An IMU recording is analysed once no batch of it has arrived for this long; a later batch
    # queues it again. Longer than a phone's upload interval during a session, so that a live
    # recording is analysed once when it ends rather than again after every upload.
    analysis_quiet_s: float = 15.0
    analysis_poll_s: float = 0.25
    analysis_budget_s: float = 2.0  # analysis work per poll, so that a backlog cannot starve the stream
    session_margin_s: float = 120.0  # recordings this close to a session's start/end belong to it
    max_session_s: float = 3 * 3600.0  # bounds a session whose end (or start) marker is missing
    active_cadence_spm: int = 100  # steps per minute of a moderately active minute (Tudor-Locke 2018)
    flags_sweep_interval_s: float = 3600.0
    eligibility_interval_s: float = 30.0
    lag_report_interval_s: float = 10.0
    # Back-off ceiling for retries of transient database and broker errors (a restart takes seconds).
    retry_max_backoff_s: float = 10.0
    # SIGTERM: graceful stop first; a worker still alive this long after it exits hard (a thread
    # blocked in a database call must not keep a stopping process alive).
    worker_stop_timeout_s: float = 10.0
    # How often a worker checks that the broker still has its topics (a restarted development broker
    # has none); it recreates them and restarts itself before consuming again.
    topic_check_interval_s: float = 2.0

    # --- services ---------------------------------------------------------------------------------
    metrics_port: int = 9464

    @property
    def pg_dir(self) -> Path:
        return self.state_dir / "pg"

    @property
    def broker_dir(self) -> Path:
        return self.state_dir / "broker"

    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    @property
    def kafka_broker_url(self) -> str:
        return f"kafka://{self.kafka_bootstrap}"

    def role_password(self, role: Literal["owner", "writer", "reader", "app"]) -> str:
        explicit = getattr(self, f"pg_{role}_password")
        if explicit:
            return str(explicit)
        if self.environment == "production":  # never a local generated password in production
            raise RuntimeError(f"RTM_PG_{role.upper()}_PASSWORD is not set (RTM_ENVIRONMENT=production)")
        path = self.secrets_dir / f"pg_{role}_password"
        if not path.exists():
            raise RuntimeError(
                f"no password for database role {role!r}: set RTM_PG_{role.upper()}_PASSWORD "
                f"or start the local stack with `rtm up`"
            )
        return path.read_text().strip()

    def dsn(self, role: Literal["owner", "writer", "reader", "app"] = "writer") -> str:
        return self.conninfo(getattr(self, f"pg_{role}_user"), self.role_password(role), application=f"rtm-{role}")

    def conninfo(self, user: str, password: str | None, dbname: str | None = None, application: str = "rtm") -> str:
        """libpq connection string for `user` on the configured server, with the TLS settings."""
        from psycopg.conninfo import make_conninfo

        tls = {"sslrootcert": str(self.pg_sslrootcert)} if self.pg_sslrootcert else {}
        return make_conninfo(
            host=self.pg_host,
            port=self.pg_port,
            dbname=dbname or self.pg_database,
            user=user,
            password=password,
            application_name=application,
            sslmode=self.pg_sslmode,
            **tls,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
