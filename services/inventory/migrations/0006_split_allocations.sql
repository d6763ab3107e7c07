-- A reservation may be pinned at several locations (a split shipment): each stored line names the location it is
-- pinned (in `lines`) or committed (in `committed_lines`) at; held lines name none. `location_id` keeps the first
-- pinned location, for people reading the table.
UPDATE reservations SET lines = (SELECT coalesce(jsonb_agg(l || jsonb_build_object('location_id', location_id)), '[]')
                                 FROM jsonb_array_elements(lines) l)
WHERE status = 'allocated' AND location_id IS NOT NULL;
UPDATE reservations SET committed_lines = (SELECT coalesce(jsonb_agg(l || jsonb_build_object('location_id', location_id)),
                                                           '[]')
                                           FROM jsonb_array_elements(committed_lines) l)
WHERE location_id IS NOT NULL AND committed_lines <> '[]';
