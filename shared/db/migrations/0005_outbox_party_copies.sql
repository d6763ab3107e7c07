-- A message for an outside party on a topic read per party (orders.events.v1) is staged twice, for the topic and
-- for the party's own (orders.events.v1.<channel>): two rows, one envelope id.
ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_key, ADD UNIQUE (event_id, topic);
ALTER TABLE outbox_parked DROP CONSTRAINT outbox_parked_pkey, ADD PRIMARY KEY (event_id, topic);
