-- The outbox in 16 slots by message key: several relays (one per service instance) publish at once, each the
-- slots it holds (advisory locks), and a key's messages, always in one slot, still go out in staging order.
-- OutboxRelay.SLOTS must match the 15 below.
ALTER TABLE outbox ADD COLUMN slot smallint GENERATED ALWAYS AS ((hashtext(key) & 15)::smallint) STORED;
CREATE INDEX outbox_slot_seq ON outbox (slot, seq);
