-- An order shipped in several parcels gets a message per parcel: one per (order, kind, reference), the reference
-- telling the parcels apart ('' where a kind happens once per order).
ALTER TABLE notifications ADD COLUMN reference text NOT NULL DEFAULT '';
ALTER TABLE notifications DROP CONSTRAINT notifications_order_id_kind_key;
ALTER TABLE notifications ADD CONSTRAINT notifications_order_id_kind_reference_key UNIQUE (order_id, kind, reference);
