-- Fulfilment orders can end rejected by the location or cancelled with the order.
ALTER TABLE fulfillment_orders DROP CONSTRAINT fulfillment_orders_status_check;
ALTER TABLE fulfillment_orders ADD CONSTRAINT fulfillment_orders_status_check
    CHECK (status IN ('requested', 'picked', 'packed', 'shipped', 'rejected', 'cancelled'));
ALTER TABLE fulfillment_orders ADD COLUMN reject_reason text;
