-- The trace context (W3C traceparent/tracestate) of the step that last moved each saga, so that what a
-- deadline sends continues the order's trace; ops can find an order's trace id here.
ALTER TABLE order_sagas ADD COLUMN trace_context jsonb NOT NULL DEFAULT '{}';
