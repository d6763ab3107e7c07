CREATE TABLE orders (
    order_id         uuid PRIMARY KEY,
    channel          text  NOT NULL,
    channel_order_id text  NOT NULL,
    status           text  NOT NULL CHECK (status IN ('accepted', 'confirmed', 'shipped', 'cancelled')),
    placed           jsonb NOT NULL,  -- the PlaceOrder payload as accepted
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- A channel retrying an order gets the same order.
    UNIQUE (channel, channel_order_id)
);

-- The order saga: one row per order, its current step and what the steps learnt.
CREATE TABLE order_sagas (
    order_id             uuid PRIMARY KEY REFERENCES orders,
    state                text    NOT NULL,
    location_id          text,
    fulfillment_order_id uuid,
    availability         jsonb   NOT NULL DEFAULT '[]',
    excluded_locations   text[]  NOT NULL DEFAULT '{}',
    cancel_reason        jsonb,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_sagas_open ON order_sagas (state) WHERE state NOT IN ('shipped', 'cancelled');

-- Everything that happened to an order, in order: what came in and what went out.
CREATE TABLE order_timeline (
    entry_id     bigserial PRIMARY KEY,
    order_id     uuid NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    direction    text NOT NULL CHECK (direction IN ('in', 'out', 'note')),
    message_type text NOT NULL,
    message_id   uuid,
    saga_state   text
);
CREATE INDEX order_timeline_order ON order_timeline (order_id, entry_id);
