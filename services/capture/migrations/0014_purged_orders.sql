-- The ids of purged orders: a PlaceOrder for one, even written afresh, is refused (ORDER_PURGED) instead of
-- placing the order, and shipping it, again. About 100 bytes an order, kept: an order id is never taken twice.
CREATE TABLE purged_orders (
    order_id  uuid PRIMARY KEY,
    purged_at timestamptz NOT NULL DEFAULT now()
);

-- A placement whose insert waited for a purge of the same order (the row being deleted) goes on once the purge
-- has committed, and its statement's snapshot, older, did not see the purged id. Checked again after the insert,
-- in a query of its own (a newer snapshot); the transaction fails as a serialization failure, which the consumer
-- retries, and the retry sees the id. The function keeps the migration's search path: it finds purged_orders
-- whoever inserts, whatever their own search path.
CREATE FUNCTION orders_not_purged() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF EXISTS (SELECT FROM inserted i JOIN purged_orders p USING (order_id)) THEN
        RAISE EXCEPTION 'an order purged while it was being placed again'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER orders_not_purged AFTER INSERT ON orders REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION orders_not_purged();
