-- Purchase orders waiting for their vendor's acknowledgement, oldest first (the acknowledgement deadline's scan).
CREATE INDEX fulfillment_orders_unacknowledged ON fulfillment_orders (created_at)
    WHERE status = 'requested' AND purchase_order IS NOT NULL;
