-- An order edit's units added to a reservation, once per edit: a repeated ExtendReservation gets this answer.
CREATE TABLE reservation_extensions (
    order_id uuid NOT NULL,
    edit_id text NOT NULL,
    answer jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, edit_id)
);
