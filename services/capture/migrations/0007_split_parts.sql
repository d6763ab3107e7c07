-- An order may be served by several fulfilment orders (a split shipment): the saga keeps its parts (location,
-- lines, status) and the plan being pinned, instead of one location and fulfilment order.
ALTER TABLE order_sagas ADD COLUMN parts jsonb NOT NULL DEFAULT '[]', ADD COLUMN plan jsonb NOT NULL DEFAULT '[]';
UPDATE order_sagas s SET parts = jsonb_build_array(jsonb_build_object(
    'location_id', s.location_id,
    'lines', (SELECT jsonb_agg(jsonb_build_object('sku', l->>'sku', 'quantity', (l->>'quantity')::int))
              FROM orders o, jsonb_array_elements(o.placed->'lines') l WHERE o.order_id = s.order_id),
    'status', CASE s.state WHEN 'fulfilling' THEN 'requested' WHEN 'awaiting_shipment' THEN 'open'
                           WHEN 'cancelling' THEN 'open' WHEN 'reallocating' THEN 'rejected'
                           WHEN 'cancelled' THEN 'cancelled' ELSE s.state END))
WHERE s.location_id IS NOT NULL AND s.state NOT IN ('routing', 'allocating');
UPDATE order_sagas s SET plan = jsonb_build_array(jsonb_build_object(
    'location_id', s.location_id,
    'lines', (SELECT jsonb_agg(jsonb_build_object('sku', l->>'sku', 'quantity', (l->>'quantity')::int))
              FROM orders o, jsonb_array_elements(o.placed->'lines') l WHERE o.order_id = s.order_id)))
WHERE s.location_id IS NOT NULL AND s.state = 'allocating';
ALTER TABLE order_sagas DROP COLUMN location_id, DROP COLUMN fulfillment_order_id;
