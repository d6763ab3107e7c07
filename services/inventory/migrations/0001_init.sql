-- Stock per SKU per location. `allocated` is held for orders routed to this location.
CREATE TABLE location_stock (
    sku         text    NOT NULL,
    location_id text    NOT NULL,
    on_hand     integer NOT NULL CHECK (on_hand >= 0),
    allocated   integer NOT NULL DEFAULT 0 CHECK (allocated >= 0 AND allocated <= on_hand),
    PRIMARY KEY (sku, location_id)
);

-- Network totals per SKU. `reserved` counts every live reservation, allocated to a location or not,
-- so network availability is on_hand - reserved and can never go below zero.
CREATE TABLE sku_stock (
    sku      text PRIMARY KEY,
    on_hand  integer NOT NULL CHECK (on_hand >= 0),
    reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand)
);

-- The reservation ledger: one row per order, always ending released or committed.
CREATE TABLE reservations (
    order_id    uuid PRIMARY KEY,
    status      text NOT NULL CHECK (status IN ('held', 'allocated', 'released', 'committed')),
    lines       jsonb NOT NULL,
    location_id text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE receipts (
    receipt_id  text PRIMARY KEY,
    sku         text    NOT NULL,
    location_id text    NOT NULL,
    quantity    integer NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
