-- An exchange: the return's replacement order (the price difference is settled when the return arrives).
ALTER TABLE returns ADD COLUMN exchange_order_id uuid, ADD COLUMN price_difference numeric(14, 2);
