-- An order's capacity claims, found by the order: what order retention deletes.
CREATE INDEX capacity_claims_order ON capacity_claims (order_id);
