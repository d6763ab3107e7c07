-- An edit may route an order back to a location it was withdrawn from: a new fulfilment order there (its id
-- from order, location and round), beside the withdrawn one. The id alone identifies a fulfilment order.
ALTER TABLE fulfillment_orders DROP CONSTRAINT fulfillment_orders_order_id_location_id_key;
CREATE INDEX fulfillment_orders_order_location ON fulfillment_orders (order_id, location_id);
