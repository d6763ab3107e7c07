-- A fulfilment order may ship in several parcels: `shipped_lines` sums them; `partially_shipped` until the last.
-- Each parcel is a shipment, known by its tracking number (reported twice, it is one).
ALTER TABLE fulfillment_orders DROP CONSTRAINT fulfillment_orders_status_check;
ALTER TABLE fulfillment_orders ADD CONSTRAINT fulfillment_orders_status_check
    CHECK (status IN ('requested', 'accepted', 'picked', 'packed', 'partially_shipped', 'shipped', 'delivered',
                      'ready_for_pickup', 'picked_up', 'rejected', 'cancelled'));
ALTER TABLE fulfillment_orders ADD COLUMN shipped_lines jsonb NOT NULL DEFAULT '[]';
UPDATE fulfillment_orders SET shipped_lines = lines WHERE status IN ('shipped', 'delivered');

CREATE TABLE shipments (
    shipment_id          uuid PRIMARY KEY,
    fulfillment_order_id uuid NOT NULL REFERENCES fulfillment_orders,
    carrier              text NOT NULL,
    tracking_number      text NOT NULL,
    lines                jsonb NOT NULL,
    shipped_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shipments_fulfillment_order ON shipments (fulfillment_order_id);
