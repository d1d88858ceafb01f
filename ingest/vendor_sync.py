"""The gateway's vendor syncer: works through queued webhook notifications and backfills, calling
the vendor's API with the connection's (decrypted, refreshed) token, and accepts what it gets like
any upload (ingest.acceptance). Webhook routes only verify and queue, so the vendor is answered fast.

Per connection, one sync fetches the patient-local days from the day after the last completely
synced one (`synced_through`; first sync: `backfill_days` back, never before enrolment) to today,
plus the notified day if it is older: only the gaps. Today is fetched but never marked synced
(its totals still grow). A 401/403 or a refused refresh marks the connection
`reauthorization_required` and stops there (the clinic sees it; no retries); a 429 or an exhausted
per-user budget postpones the sync to when the vendor allows; other failures back off and give up
after `notification_max_attempts` (the next backfill covers the day)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from prometheus_client import Counter, Gauge
from psycopg.types.json import Jsonb

from device_adapters.cloud import oauth
from device_adapters.cloud.connections import Connection, Connections, Notification
from device_adapters.cloud.errors import RateLimited, VendorRejected, VendorUnavailable
from device_adapters.cloud.settings import VendorSettings
from device_adapters.context import DeviceContext
from ingest.acceptance import accept
from ingest.outbox import Relay
from ingest.publisher import Publisher
from ingest.ratelimit import TokenBucketLimiter
from ingest.settings import GatewaySettings
from ingest.store import DeviceCredential, Store
from ingest.validation import check_item
from rtm.contract import ActivityInterval, Event
from rtm.localtime import TzHistory

log = logging.getLogger("ingest.vendors")
CARRIED = ("ping", "push")  # notification kinds that carry data (or a pull of it) themselves
HEALTH_EVERY_S = 15.0  # sync-health gauges: a scrape interval
SYNCS = Counter("rtm_vendor_syncs_total", "vendor syncs by vendor and outcome", ["vendor", "outcome"])
CONNECTIONS = Gauge("rtm_vendor_connections", "vendor connections by vendor and status", ["vendor", "status"])
LAG = Gauge("rtm_vendor_sync_lag_seconds", "age of the oldest last success among active connections", ["vendor"])


class CloudAdapter(Protocol):
    """What the syncer needs of a vendor."""

    vendor: str

    def provider(self) -> oauth.OAuthProvider | None: ...

    async def account(self, token: dict[str, Any], member_id: str) -> str:
        """After the code exchange: the vendor's user id (and any registration the vendor needs)."""
        ...

    async def fetch_day(
        self, token: dict[str, Any], day: dt.date, tz: str, ctx: DeviceContext, complete: bool
    ) -> list[ActivityInterval]: ...


@dataclass(frozen=True)
class Outcome:
    status: str  # done | retry | failed
    detail: str = ""
    retry_at: datetime | None = None
    accepted: int = 0


@dataclass
class VendorSyncer:
    vcfg: VendorSettings
    gcfg: GatewaySettings
    store: Store
    publisher: Publisher
    relay: Relay | None
    connections: Connections
    adapters: dict[str, CloudAdapter]
    budget: TokenBucketLimiter = field(init=False)
    _task: asyncio.Task[None] | None = None
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _health_at: float = 0.0
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        self.budget = TokenBucketLimiter(self.vcfg.user_rate_per_s, self.vcfg.user_burst)

    # --- tokens ---------------------------------------------------------------------------------
    async def _fresh_token(self, c: Connection) -> dict[str, Any]:
        exp = c.token.get("expires_at")
        if exp is None or float(exp) - self.vcfg.refresh_margin_s > self.now().timestamp():
            return c.token
        provider = self.adapters[c.vendor].provider()
        if provider is None:
            raise VendorUnavailable(f"{c.vendor}: the token expires and no OAuth client is configured")
        token = await oauth.refresh(provider, c.token)
        await self.connections.save_token(c.vendor, c.vendor_user_id, token)
        return token

    # --- one connection -------------------------------------------------------------------------
    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def sync(
        self, vendor: str, user: str, notified_day: dt.date | None = None, carried: Notification | None = None
    ) -> Outcome:
        async with self._lock(f"{vendor}:{user}"):
            outcome = await self._sync(vendor, user, notified_day, carried)
        SYNCS.labels(vendor, outcome.status).inc()
        return outcome

    async def _sync(
        self, vendor: str, user: str, notified_day: dt.date | None, carried: Notification | None = None
    ) -> Outcome:
        c = await self.connections.get(vendor, user)
        if c is None or c.status != "active":
            return Outcome("done", "no active connection")
        cred = await self.store.device_credential(c.credential_id)
        if cred is None or cred.revoked_at is not None:
            await self.connections.record(vendor, user, status="disconnected", error="enrolment revoked")
            return Outcome("done", "enrolment revoked")
        now = self.now()
        if c.not_before is not None and c.not_before > now:
            return Outcome("retry", "vendor rate limit", c.not_before)
        adapter = self.adapters[vendor]
        history = await self._zones(cred.patient_id, c.tz)
        zone = ZoneInfo(history.tz_at(now))
        today = now.astimezone(zone).date()
        floor = max(cred.valid_from.astimezone(zone).date(), today - timedelta(days=self.vcfg.backfill_days))
        start = max(floor, c.synced_through + timedelta(days=1)) if c.synced_through else floor
        days = {start + timedelta(days=k) for k in range((today - start).days + 1)}
        if notified_day is not None and floor <= notified_day <= today:
            days.add(notified_day)
        ctx = DeviceContext(patient_id=cred.patient_id, episode_id=cred.episode_id, device_id=cred.device_id)
        through = c.synced_through
        accepted = 0
        try:
            token = await self._fresh_token(c)
            if carried is not None:
                accepted += await self._carried(adapter, token, carried, cred, ctx)
            for day in sorted(days):
                wait = self.budget.acquire(f"{vendor}:{user}")
                if wait > 0:
                    await self.connections.record(vendor, user, synced_through=through)
                    return Outcome("retry", "per-user budget spent", now + timedelta(seconds=wait), accepted)
                # The zone of the patient's history in force that day (the device's clock follows
                # the patient); a move inside a day takes effect for the vendor's data at its midday.
                day_tz = history.tz_at(datetime.combine(day, dt.time(12), UTC))
                intervals = await adapter.fetch_day(token, day, day_tz, ctx, complete=day < today)
                accepted += await self._accept(intervals, cred)
                if day < today and (through is None or day == through + timedelta(days=1) or day <= through):
                    through = max(day, through) if through else day
        except VendorRejected as exc:
            await self.connections.record(
                vendor, user, status="reauthorization_required", synced_through=through, error=str(exc)
            )
            log.warning("%s connection needs re-authorisation: %s", vendor, exc)
            return Outcome("done", "reauthorization required", accepted=accepted)
        except RateLimited as exc:
            until = self.now() + timedelta(seconds=exc.retry_after_s)
            await self.connections.record(
                vendor, user, synced_through=through, error=str(exc), not_before=until
            )
            return Outcome("retry", str(exc), until, accepted)
        except VendorUnavailable as exc:
            await self.connections.record(vendor, user, synced_through=through, error=str(exc))
            return Outcome("retry", str(exc), None, accepted)
        await self.connections.record(vendor, user, synced_through=through, success=True)
        return Outcome("done", "synced", accepted=accepted)

    async def _accept(self, intervals: list[ActivityInterval], cred: DeviceCredential) -> int:
        # Vendor data cannot be corrected by a client: what lies outside the enrolment is skipped.
        skew = timedelta(seconds=self.gcfg.clock_skew_s)
        events: list[Event] = []
        for i, interval in enumerate(intervals):
            checked = check_item(i, interval, cred, self.now(), skew)
            if isinstance(checked, Event):
                events.append(checked)
        results = await accept(self.store, self.publisher, self.relay, self.gcfg, events)
        return sum(1 for r in results if r.status == "accepted")

    async def _carried(self, adapter: Any, token: dict[str, Any], n: Notification, cred: DeviceCredential,
                       ctx: DeviceContext) -> int:
        """A notification that carries its data or a one-time pull (Garmin). What a pull fetched is
        stored in the queued notification before it is accepted: a retry after a failure accepts
        the stored copy, because the vendor may refuse the same range twice."""
        payload = n.payload
        if not isinstance(payload.get("items"), list):
            items = await adapter.notified_items(token, payload)
            payload = {**payload, "items": items}
            async with self.store.pool.connection() as conn:
                await conn.execute(
                    "update vendor_notifications set payload = %s where vendor = %s and notification_id = %s",
                    (Jsonb(payload), n.vendor, n.notification_id),
                )
        intervals = adapter.notified_intervals(payload, list(payload["items"]), ctx)
        return await self._accept(intervals, cred)

    async def _zones(self, patient_id: str, connection_tz: str) -> TzHistory:
        """The patient's recorded time-zone history; without one, the zone given at connection."""
        async with self.store.pool.connection() as conn:
            cur = await conn.execute(
                "select effective_from, tz from patient_timezones where patient_id = %s", (patient_id,)
            )
            rows = [(r[0], str(r[1])) for r in await cur.fetchall()]
        return TzHistory(rows or [(datetime(1970, 1, 1, tzinfo=UTC), connection_tz)])

    # --- the notification queue -----------------------------------------------------------------
    async def process(self, n: Notification, day_of: Callable[[Notification], dt.date | None]) -> Outcome:
        if n.vendor_user_id is None:
            await self.connections.finish(n, "done")
            return Outcome("done", "no user")
        carries = n.payload.get("kind") in CARRIED and hasattr(self.adapters.get(n.vendor), "notified_items")
        out = await self.sync(n.vendor, n.vendor_user_id, day_of(n), n if carries else None)
        if out.status == "retry" and n.attempts < self.vcfg.notification_max_attempts:
            await self.connections.finish(n, "pending", out.detail, out.retry_at or self._backoff(n))
        elif out.status == "retry":
            await self.connections.finish(n, "failed", out.detail)
            out = Outcome("failed", out.detail)
        else:
            await self.connections.finish(n, "done", None)
        return out

    def _backoff(self, n: Notification) -> datetime:
        """When a failed notification is due again: doubling from `notification_backoff_s`, capped."""
        backoff = min(self.vcfg.notification_backoff_s * 2 ** (n.attempts - 1), self.vcfg.notification_backoff_max_s)
        return self.now() + timedelta(seconds=backoff)

    async def drain_once(self, day_of: dict[str, Callable[[Notification], dt.date | None]]) -> int:
        batch = await self.connections.claim(20, lease_s=60.0, vendors=sorted(self.adapters))
        for n in batch:
            try:
                await self.process(n, day_of[n.vendor])
            except Exception as exc:  # one bad notification must not stop the queue
                # Type and place only: an exception's text may quote the vendor's (patient) data.
                where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
                log.error("processing a %s notification failed: %s at %s", n.vendor, type(exc).__name__,
                          f"{where.filename}:{where.lineno}" if where else "?")
                await self._unexpected(n, exc)
        return len(batch)

    async def _unexpected(self, n: Notification, exc: Exception) -> None:
        """An error no adapter anticipated backs off like a vendor failure and fails for good after
        `notification_max_attempts`, rather than coming back every lease for ever. The stored error
        names the exception's type only."""
        error = f"unexpected {type(exc).__name__} while syncing"
        with contextlib.suppress(Exception):  # the database itself failed: the lease expires instead
            if n.attempts >= self.vcfg.notification_max_attempts:
                await self.connections.finish(n, "failed", error)
            else:
                await self.connections.finish(n, "pending", error, self._backoff(n))
            SYNCS.labels(n.vendor, "error").inc()

    def wake(self) -> None:
        """A notification was queued by this process: look now rather than at the next poll."""
        self._wake.set()

    async def _loop(self, day_of: dict[str, Callable[[Notification], dt.date | None]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if await self.drain_once(day_of) == 0:
                    if loop.time() - self._health_at > HEALTH_EVERY_S:
                        self._health_at = loop.time()
                        await self._export_health()
                    # Retries come due by time, new notifications of other gateways by the poll.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.vcfg.syncer_poll_s)
                    self._wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down: wait and try again
                log.warning("vendor syncer: %s", type(exc).__name__)
                await asyncio.sleep(max(1.0, self.vcfg.syncer_poll_s))

    async def _export_health(self) -> None:
        async with self.store.pool.connection() as conn:
            cur = await conn.execute(
                """select vendor, status, count(*),
                          extract(epoch from now() - min(coalesce(last_success_at, created_at)))
                     from vendor_connections group by vendor, status"""
            )
            for vendor, status, n, lag in await cur.fetchall():
                CONNECTIONS.labels(vendor, status).set(n)
                if status == "active":
                    LAG.labels(vendor).set(float(lag or 0.0))

    def start(self, day_of: dict[str, Callable[[Notification], dt.date | None]]) -> None:
        self._task = asyncio.create_task(self._loop(day_of), name="vendor-syncer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


Runner = Callable[[], Awaitable[None]]
