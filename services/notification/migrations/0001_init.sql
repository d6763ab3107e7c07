-- Who to tell about an order, learnt from OrderAccepted (kept here, never logged).
CREATE TABLE recipients (
    order_id         uuid PRIMARY KEY,
    channel_order_id text NOT NULL,
    email    text NOT NULL,
    name     text NOT NULL
);

-- Every customer message. One per (order, kind): a redelivered or repeated event never sends twice.
CREATE TABLE notifications (
    notification_id uuid PRIMARY KEY,
    order_id        uuid NOT NULL,
    kind            text NOT NULL,
    channel         text NOT NULL,
    recipient       text NOT NULL,
    subject         text NOT NULL,
    body            text NOT NULL,
    source_event_id uuid NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, kind)
);
