-- Kafka record headers of each staged message (the W3C trace context of the step that staged it), sent by
-- the relay with the message; kept when a message is parked, so a parked message still names its trace.
ALTER TABLE outbox ADD COLUMN headers jsonb NOT NULL DEFAULT '{}';
ALTER TABLE outbox_parked ADD COLUMN headers jsonb NOT NULL DEFAULT '{}';
