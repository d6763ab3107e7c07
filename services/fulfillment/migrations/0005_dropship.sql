-- Dropship: fulfillment keeps the kind of every location routing registers (from LocationRegistered), and a
-- fulfilment order for a dropship vendor goes out as a purchase order, whose number it keeps.
CREATE TABLE location_kinds (
    location_id text PRIMARY KEY,
    kind        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE fulfillment_orders ADD COLUMN purchase_order text;
