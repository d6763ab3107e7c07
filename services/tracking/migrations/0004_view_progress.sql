-- Where each order's view stands: the sort key of the last event applied and the units cancelled so far. A new
-- event that sorts after it is applied to the view as it stands; the view is projected from all of the order's
-- events again only when one arrives late (or `progress` is NULL, as for views written before this column).
ALTER TABLE orders ADD COLUMN progress jsonb;
