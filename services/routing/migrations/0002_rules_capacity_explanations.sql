-- Daily capacity and delivery zones per location (from RegisterLocation).
ALTER TABLE locations
    ADD COLUMN daily_capacity integer CHECK (daily_capacity >= 0),
    ADD COLUMN zones jsonb NOT NULL DEFAULT '[]';

-- Every decision keeps its structured explanation, its assignments and the rule set that made it.
ALTER TABLE decisions
    ADD COLUMN assignments jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN details jsonb,
    ADD COLUMN rule_set text;

-- One row per fulfilment order that counts against a location's capacity of the day it was created; released
-- when it is cancelled or rejected. Keyed by fulfilment order, so redelivered or repeated events count once.
CREATE TABLE capacity_claims (
    fulfillment_order_id uuid PRIMARY KEY,
    order_id             uuid NOT NULL,
    location_id          text NOT NULL,
    day                  date NOT NULL,
    released_at          timestamptz
);

-- Fulfilment orders a location holds on a day: the claims not released (kept in step with capacity_claims).
CREATE TABLE capacity_usage (
    location_id text    NOT NULL,
    day         date    NOT NULL,
    used        integer NOT NULL CHECK (used >= 0),
    PRIMARY KEY (location_id, day)
);
