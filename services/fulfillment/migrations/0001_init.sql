CREATE TABLE fulfillment_orders (
    fulfillment_order_id uuid PRIMARY KEY,
    order_id             uuid NOT NULL,
    location_id          text NOT NULL,
    status               text NOT NULL CHECK (status IN ('requested', 'picked', 'packed', 'shipped')),
    lines                jsonb NOT NULL,
    delivery             jsonb NOT NULL,
    carrier              text,
    tracking_number      text,
    correlation_id       text NOT NULL,  -- the order's; a location's reports continue the order's flow
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    -- One fulfilment order per order and location: a repeated request finds the existing one.
    UNIQUE (order_id, location_id)
);
