-- Inbox keys are pruned by age (shared/messaging/retention.py). BRIN: the rows arrive in time order, so a
-- tiny index finds the old ones without slowing the insert every message pays for.
CREATE INDEX inbox_received_at ON inbox USING brin (received_at);
