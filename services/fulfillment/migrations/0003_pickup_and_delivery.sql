-- Acceptance by the location, delivery to the customer, and pickup in store (ready, collected); `ready_at` starts
-- the hold after which an uncollected pickup order is cancelled.
ALTER TABLE fulfillment_orders DROP CONSTRAINT fulfillment_orders_status_check;
ALTER TABLE fulfillment_orders ADD CONSTRAINT fulfillment_orders_status_check
    CHECK (status IN ('requested', 'accepted', 'picked', 'packed', 'shipped', 'delivered', 'ready_for_pickup',
                      'picked_up', 'rejected', 'cancelled'));
ALTER TABLE fulfillment_orders ADD COLUMN ready_at timestamptz;
CREATE INDEX fulfillment_orders_awaiting_pickup ON fulfillment_orders (ready_at) WHERE status = 'ready_for_pickup';
