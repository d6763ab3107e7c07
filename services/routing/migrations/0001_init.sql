CREATE TABLE locations (
    location_id        text PRIMARY KEY,
    name               text    NOT NULL,
    kind               text    NOT NULL CHECK (kind IN ('warehouse', 'store', 'dropship')),
    lat                double precision NOT NULL,
    lon                double precision NOT NULL,
    ships_to_customers boolean NOT NULL,
    accepts_pickup     boolean NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Every decision, with its explanation, so an operator can see why an order went where it went.
CREATE TABLE decisions (
    decision_id bigserial PRIMARY KEY,
    order_id    uuid NOT NULL,
    location_id text,
    reason_code text,
    explanation text NOT NULL,
    decided_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_order ON decisions (order_id);
