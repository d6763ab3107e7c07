-- The backorder task asks twice a second whether any SKU with waiting orders has free stock: an index of just
-- those SKUs, so it never scans every SKU.
CREATE INDEX sku_stock_waiting ON sku_stock (sku) WHERE backordered > 0;
