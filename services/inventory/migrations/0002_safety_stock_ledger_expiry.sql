-- Safety stock: units a location never promises. A location's figure holds for every SKU there unless the SKU
-- has its own at that location.
CREATE TABLE location_safety_stock (
    location_id text PRIMARY KEY,
    quantity    integer NOT NULL CHECK (quantity >= 0)
);

CREATE TABLE sku_safety_stock (
    sku         text    NOT NULL,
    location_id text    NOT NULL,
    quantity    integer NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (sku, location_id)
);

-- A reservation only held (never allocated) for longer than the TTL expires. `updated_at` is when it was last
-- held; the correlation id lets the expiry speak in the order's flow.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('held', 'allocated', 'released', 'committed', 'expired'));
ALTER TABLE reservations ADD COLUMN correlation_id text;
CREATE INDEX reservations_held_since ON reservations (updated_at) WHERE status = 'held';

-- Cycle counts and adjustments booked, by the ERP/WMS document id: a document is applied once.
CREATE TABLE stock_documents (
    document_id text PRIMARY KEY,
    kind        text    NOT NULL CHECK (kind IN ('count', 'adjustment')),
    sku         text    NOT NULL,
    location_id text    NOT NULL,
    change      integer NOT NULL,
    booked_at   timestamptz NOT NULL DEFAULT now()
);

-- Every change of a stock counter, append-only: network rows (location_id NULL) move sku_stock's on_hand and
-- reserved, location rows move location_stock's on_hand and allocated. The counters equal the sums (oms check).
CREATE TABLE stock_ledger (
    entry_id    bigserial PRIMARY KEY,
    sku         text    NOT NULL,
    location_id text,
    kind        text    NOT NULL CHECK (kind IN ('opening', 'reserve', 'release', 'allocate', 'deallocate', 'commit',
                                                  'receipt', 'count', 'adjustment', 'expiry')),
    on_hand     integer NOT NULL DEFAULT 0,
    reserved    integer NOT NULL DEFAULT 0,
    allocated   integer NOT NULL DEFAULT 0,
    cause       text,
    order_id    uuid,
    document_id text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((location_id IS NULL AND allocated = 0) OR (location_id IS NOT NULL AND reserved = 0))
);
CREATE INDEX stock_ledger_counter ON stock_ledger (sku, location_id);

CREATE FUNCTION stock_ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stock_ledger is append-only';
END $$;
CREATE TRIGGER stock_ledger_append_only BEFORE UPDATE OR DELETE ON stock_ledger
    FOR EACH ROW EXECUTE FUNCTION stock_ledger_is_append_only();

-- Counters from before the ledger open it.
INSERT INTO stock_ledger (sku, location_id, kind, on_hand, reserved)
    SELECT sku, NULL, 'opening', on_hand, reserved FROM sku_stock;
INSERT INTO stock_ledger (sku, location_id, kind, on_hand, allocated)
    SELECT sku, location_id, 'opening', on_hand, allocated FROM location_stock;
