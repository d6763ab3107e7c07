-- Compensations registered before their steps, step deadlines that survive restarts, and the order's
-- correlation id so that messages sent on a deadline (not in answer to a message) still carry it.
ALTER TABLE order_sagas
    ADD COLUMN compensations  text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN cancel_stage   text,
    ADD COLUMN attempts       integer     NOT NULL DEFAULT 0,
    ADD COLUMN deadline_at    timestamptz,
    ADD COLUMN correlation_id text        NOT NULL DEFAULT '';

CREATE INDEX order_sagas_due ON order_sagas (deadline_at) WHERE deadline_at IS NOT NULL;

-- Sagas started before this migration registered no compensations: give them what their step implies.
UPDATE order_sagas SET compensations = CASE
        WHEN state IN ('reserving', 'routing', 'allocating') THEN ARRAY['release_reservation']
        WHEN state IN ('fulfilling', 'awaiting_shipment') THEN ARRAY['release_reservation', 'cancel_fulfillment']
        ELSE '{}'::text[] END,
    deadline_at = CASE WHEN state IN ('reserving', 'routing', 'allocating', 'fulfilling') THEN now() END;
