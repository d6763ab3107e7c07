-- A pickup order waits at the store (ready_for_pickup) until collected (picked_up); a shipment is delivered.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('accepted', 'confirmed', 'ready_for_pickup', 'shipped', 'delivered', 'picked_up', 'cancelled'));
DROP INDEX order_sagas_open;
CREATE INDEX order_sagas_open ON order_sagas (state) WHERE state NOT IN ('shipped', 'delivered', 'picked_up', 'cancelled');
