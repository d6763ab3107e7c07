-- Orders closed, oldest first: what the retention worker reads to find those past their retention.
CREATE INDEX order_sagas_closed ON order_sagas (state_since)
    WHERE state IN ('delivered', 'picked_up', 'shipped', 'cancelled');
