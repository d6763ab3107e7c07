-- Order edits and line cancellations: each edit id's request and answer (the same edit id asked again gets the
-- same answer), the saga's edit under way, and units an edit added that no part has yet.
CREATE TABLE order_edits (
    order_id uuid NOT NULL REFERENCES orders (order_id),
    edit_id text NOT NULL,
    request jsonb NOT NULL,
    answer jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, edit_id)
);

ALTER TABLE order_sagas ADD COLUMN edit jsonb, ADD COLUMN unplaced jsonb NOT NULL DEFAULT '[]';
