-- A reservation is committed shipment by shipment: `lines` is what is still reserved (or was, once released),
-- `committed_lines` what has shipped.
ALTER TABLE reservations ADD COLUMN committed_lines jsonb NOT NULL DEFAULT '[]';
UPDATE reservations SET committed_lines = lines, lines = '[]' WHERE status = 'committed';
