-- The read model, fed only by topics. `events` is every consumed event of an order (the timeline, customer data
-- left out); `orders` is each order's view, a pure function of its events (domain.project), recomputed whenever
-- one arrives, so a redelivered, late or replayed event changes nothing it should not.
CREATE TABLE events (
    event_id     uuid PRIMARY KEY,
    order_id     uuid NOT NULL,
    at           timestamptz NOT NULL,
    type         text NOT NULL,
    topic        text NOT NULL,
    data         jsonb NOT NULL
);
CREATE INDEX events_by_order ON events (order_id, at);

CREATE TABLE orders (
    order_id         uuid PRIMARY KEY,
    channel          text NOT NULL,
    channel_order_id text NOT NULL,
    customer_id      text,
    status           text NOT NULL,
    placed_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    view             jsonb NOT NULL,
    UNIQUE (channel, channel_order_id)
);
CREATE INDEX orders_by_customer ON orders (channel, customer_id, placed_at DESC, order_id DESC);
CREATE INDEX orders_by_status ON orders (channel, status, placed_at DESC, order_id DESC);
CREATE INDEX orders_by_time ON orders (channel, placed_at DESC, order_id DESC);

-- API keys of the channels, stored as their SHA-256 (a key is 32 random bytes: no slow hash is needed to make
-- guessing it from the digest hopeless). `oms api-key add CHANNEL` prints the key once.
CREATE TABLE api_keys (
    key_hash   bytea PRIMARY KEY,
    channel    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- HTTP intake: one row per (channel, Idempotency-Key), written in the transaction that stages the command in the
-- outbox; the same key again gets the stored answer, the same key with another request is refused.
CREATE TABLE intake_requests (
    channel          text NOT NULL,
    idempotency_key  text NOT NULL,
    request_hash     bytea NOT NULL,
    order_id         uuid NOT NULL,
    channel_order_id text NOT NULL,
    status_code      int NOT NULL,
    answer           jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, idempotency_key)
);
CREATE INDEX intake_by_order ON intake_requests (order_id);
