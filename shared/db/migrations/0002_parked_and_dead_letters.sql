-- Messages the relay could never publish (too large, refused by Kafka for good), set aside with the reason
-- so that they never block the rows behind them; ops sees them in `oms status` and `oms dead-letters`.
CREATE TABLE outbox_parked (
    event_id   uuid PRIMARY KEY,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    value      bytea       NOT NULL,
    reason     text        NOT NULL,
    created_at timestamptz NOT NULL,
    parked_at  timestamptz NOT NULL DEFAULT now()
);

-- Every message this service's consumers gave up on, with the reason and the whole original bytes (the
-- dead-letter topic carries them only up to a bound). Written in the same transaction as its DeadLetter event.
CREATE TABLE dead_letters (
    event_id       uuid PRIMARY KEY,
    consumer       text        NOT NULL,
    source_topic   text        NOT NULL,
    source_partition int       NOT NULL,
    source_offset  bigint      NOT NULL,
    reason         text        NOT NULL,
    detail         text        NOT NULL,
    original_key   bytea,
    original_value bytea       NOT NULL,
    failed_at      timestamptz NOT NULL,
    UNIQUE (source_topic, source_partition, source_offset, consumer)
);
