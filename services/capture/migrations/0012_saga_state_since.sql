-- When each saga entered its current state, for the time-per-step metric; kept by a trigger, so no writer of
-- order_sagas has to remember it. Sagas from before this migration count from now.
ALTER TABLE order_sagas ADD COLUMN state_since timestamptz NOT NULL DEFAULT now();

CREATE FUNCTION order_sagas_keep_state_since() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        NEW.state_since := now();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER order_sagas_state_since BEFORE UPDATE ON order_sagas
    FOR EACH ROW EXECUTE FUNCTION order_sagas_keep_state_since();
