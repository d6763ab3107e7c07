-- Messaging tables every service has in its own schema.

-- Transactional outbox: rows are written in the same transaction as the state change that caused them,
-- then published to Kafka by the service's relay and deleted.
CREATE TABLE outbox (
    seq        bigserial PRIMARY KEY,
    event_id   uuid        NOT NULL UNIQUE,
    topic      text        NOT NULL,
    key        text        NOT NULL,
    value      bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Inbox: the key of every message this service has processed (its envelope id, or topic/partition/offset for
-- a message too broken to have one), written in the same transaction as the message's effect.
CREATE TABLE inbox (
    message_key text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);
