-- What shipped for reservations deleted with their orders (order retention), per SKU and location: a location's
-- stock still reconciles as received less shipped once the reservations that shipped it are gone.
CREATE TABLE purged_shipments (
    sku         text    NOT NULL,
    location_id text    NOT NULL,
    quantity    bigint  NOT NULL,
    PRIMARY KEY (sku, location_id)
);
