-- Orders whose history changed since it was last published on tracking.order-history.v1. A background task
-- publishes an order's history once it has been quiet for a while (or has waited long), not on every event: a
-- history is all of an order's events, and publishing it on each one costs the square of their number. The last
-- change's correlation id, cause and trace context go with the publication.
CREATE TABLE history_due (
    order_id        uuid PRIMARY KEY,
    correlation_id  text NOT NULL,
    causation_id    uuid NOT NULL,
    headers         jsonb NOT NULL,
    first_change    timestamptz NOT NULL DEFAULT now(),
    last_change     timestamptz NOT NULL DEFAULT now()
);
