-- What an order has handed over (shipped or collected), and when last: returns are checked against it.
ALTER TABLE order_sagas ADD COLUMN shipped jsonb NOT NULL DEFAULT '[]', ADD COLUMN handed_over_at timestamptz;

-- Returns (RMAs) of an order: approved with the lines the customer sends back and where to, then received
-- (with each line's condition) and refunded once.
CREATE TABLE returns (
    return_id   text NOT NULL,
    order_id    uuid NOT NULL REFERENCES orders,
    status      text NOT NULL CHECK (status IN ('approved', 'received')),
    lines       jsonb NOT NULL,
    return_to   text NOT NULL,
    received    jsonb,
    refund      jsonb,
    refunded    numeric(14, 2),
    approved_at timestamptz NOT NULL DEFAULT now(),
    received_at timestamptz,
    PRIMARY KEY (order_id, return_id)
);
