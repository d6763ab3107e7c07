-- Orders may wait for stock (backorders): a waiting reservation holds nothing, and its SKUs' `backordered` counts
-- what waiting orders will take, first come first served (by `backordered_at`), as stock arrives.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('backordered', 'held', 'allocated', 'released', 'committed', 'expired'));
ALTER TABLE reservations ADD COLUMN backordered_at timestamptz;
CREATE INDEX reservations_waiting ON reservations (backordered_at, order_id) WHERE status = 'backordered';
ALTER TABLE sku_stock ADD COLUMN backordered integer NOT NULL DEFAULT 0 CHECK (backordered >= 0);

-- Receipts the ERP announced (purchase orders from suppliers): when waiting orders may expect their goods.
CREATE TABLE expected_receipts (
    receipt_id   text PRIMARY KEY,
    sku          text    NOT NULL,
    location_id  text    NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),
    expected_on  date    NOT NULL,
    received     boolean NOT NULL DEFAULT false,
    announced_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX expected_receipts_open ON expected_receipts (sku, expected_on) WHERE NOT received;
