-- Holds keep an order from fulfilment (`holds`: reason, who, note, expiry); `captures` are the payment
-- service's captures (capture id, amount), `voided` whether the rest of the authorisation was released. An
-- order's customer is a column, for the rule that holds a new customer's large first order.
ALTER TABLE order_sagas ADD COLUMN holds jsonb NOT NULL DEFAULT '[]',
                        ADD COLUMN captures jsonb NOT NULL DEFAULT '[]',
                        ADD COLUMN voided boolean NOT NULL DEFAULT false;
ALTER TABLE orders ADD COLUMN customer_id text;
UPDATE orders SET customer_id = placed->'customer'->>'customer_id';
CREATE INDEX orders_customer ON orders (channel, customer_id);
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('accepted', 'backordered', 'on_hold', 'confirmed', 'ready_for_pickup', 'partially_shipped',
                      'shipped', 'delivered', 'picked_up', 'cancelled'));
