-- A row without a value is published as a tombstone: on a compacted topic it removes its key's record (an order
-- purged after its retention is forgotten there too).
ALTER TABLE outbox ALTER COLUMN value DROP NOT NULL;
ALTER TABLE outbox_parked ALTER COLUMN value DROP NOT NULL;
