-- Durable acceptance: the transactional outbox of the ingest gateway.
--
-- The gateway writes an event's dedup record (ingest_accepted_events) and its encoded Kafka
-- message (here) in one transaction and answers 2xx only after the commit. A relay publishes the
-- rows to Kafka and keeps publishing a row again, with back-off, until the sink has stored the
-- event: the sink sets `stored_at` in the transaction that stores it, matching event id AND
-- digest, so that storing an older version of an edited record does not settle the newer one.
-- One row per event id: a revision (an edited Health Connect record, a withdrawal) replaces the
-- row, so the relay never republishes a superseded version over a newer one.
create table ingest_outbox (
    event_id        uuid primary key,
    digest          bytea not null,           -- BLAKE2b-128 of `value` (rtm.contract.codec.content_digest)
    topic           text not null,
    key             bytea not null,
    value           bytea not null,
    created_at      timestamptz not null default now(),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null,     -- also the relay's lease on a claimed row
    published_at    timestamptz,              -- last acknowledgement by the broker (acks=all)
    stored_at       timestamptz               -- set by the sink; the row is then done
);
-- Encoded IMU frames are float32 columns: compression costs CPU and saves nothing.
alter table ingest_outbox alter column value set storage external;
create index ingest_outbox_due on ingest_outbox (next_attempt_at) where stored_at is null;
create index ingest_outbox_stored on ingest_outbox (stored_at) where stored_at is not null;

grant select, insert, update on ingest_outbox to {writer};

-- The writer role has no DELETE anywhere: stored rows are pruned through this function only,
-- which can remove nothing that is not stored yet.
create function ingest_outbox_prune(retention interval, max_rows integer) returns integer
    language sql security definer set search_path = public, pg_temp as $$
    with gone as (
        delete from ingest_outbox
         where event_id in (select event_id from ingest_outbox
                             where stored_at < now() - retention
                             order by stored_at limit max_rows)
        returning 1)
    select count(*)::integer from gone
$$;
revoke all on function ingest_outbox_prune(interval, integer) from public;
grant execute on function ingest_outbox_prune(interval, integer) to {writer};
