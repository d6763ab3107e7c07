-- Returns a location is told to expect (from an approved RMA), and what it reported receiving.
CREATE TABLE expected_returns (
    order_id    uuid NOT NULL,
    return_id   text NOT NULL,
    location_id text NOT NULL,
    lines       jsonb NOT NULL,
    status      text NOT NULL DEFAULT 'expected' CHECK (status IN ('expected', 'received')),
    received    jsonb,
    correlation_id text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    received_at timestamptz,
    PRIMARY KEY (order_id, return_id)
);
