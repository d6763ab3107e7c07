-- Real delivery: per channel (sales channel) settings, customer preferences and bounces, set by commands; one
-- delivery per customer message and delivery channel (email, webhook), recorded with the message before anything
-- is sent, then sent by a background sender that records the outcome.

CREATE TABLE channel_settings (
    channel        text PRIMARY KEY,
    email          boolean NOT NULL,
    from_address   text,
    webhook_url    text,
    webhook_secret text,  -- never logged
    locale         text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- An opt-out, by lower-cased email address or by customer id.
CREATE TABLE customer_preferences (
    customer   text PRIMARY KEY,
    email      boolean NOT NULL,
    webhook    boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bounces (
    address     text PRIMARY KEY,  -- lower-cased
    detail      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Who the order came from, to find its channel's settings and the customer's preferences (NULL: older rows).
ALTER TABLE recipients ADD COLUMN channel text, ADD COLUMN customer_id text;

-- Bodies are cleared after the retention period (notification_body_retention_days).
ALTER TABLE notifications ALTER COLUMN subject DROP NOT NULL, ALTER COLUMN body DROP NOT NULL;

CREATE TABLE deliveries (
    delivery_id     uuid PRIMARY KEY,  -- SMTP Message-ID <delivery_id@...>, webhook-id header
    notification_id uuid NOT NULL REFERENCES notifications,
    order_id        uuid NOT NULL,
    kind            text NOT NULL,
    sales_channel   text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('email', 'webhook')),
    recipient       text NOT NULL,  -- the email address or the webhook URL
    customers       text[] NOT NULL,  -- lower-cased email and customer id: what preferences are kept by
    subject         text,
    body_text       text,
    body_html       text,
    payload         jsonb,  -- the webhook's body
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    skip_reason     text,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    correlation_id  text NOT NULL,
    trace_context   jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    body_cleared_at timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_to_clear ON deliveries (finished_at) WHERE body_cleared_at IS NULL AND status <> 'pending';
CREATE INDEX deliveries_of_notification ON deliveries (notification_id);
