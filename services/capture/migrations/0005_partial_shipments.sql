-- An order may ship in several parcels: partially_shipped until the last.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('accepted', 'confirmed', 'ready_for_pickup', 'partially_shipped', 'shipped', 'delivered',
                      'picked_up', 'cancelled'));
