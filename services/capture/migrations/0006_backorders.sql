-- An order may wait for stock (backordered) when the channel allows it.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('accepted', 'backordered', 'confirmed', 'ready_for_pickup', 'partially_shipped', 'shipped',
                      'delivered', 'picked_up', 'cancelled'));
