-- What each shipment is worth, for the ERP: a fulfilment order keeps the order's charges (`billing`, from the
-- saga's RequestFulfillment), each shipment the amounts it was posted with.
ALTER TABLE fulfillment_orders ADD COLUMN billing jsonb;
ALTER TABLE shipments ADD COLUMN amounts jsonb;
