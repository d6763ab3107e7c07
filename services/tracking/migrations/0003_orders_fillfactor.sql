-- An order's view is rewritten on every event of its order (five times on the way to confirmed). With room left on
-- each page, a rewrite that leaves the indexed columns as they were (most events do not change the status) stays
-- on its page and adds no index entries (a HOT update); a full page forces a new entry in each of four indexes.
ALTER TABLE orders SET (fillfactor = 70);
