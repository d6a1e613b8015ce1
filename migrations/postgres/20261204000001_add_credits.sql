-- A key's credits: the balance (NULL: unlimited, no credits at all), the
-- optional refill (amount and period: 'day', 'week' or 'month'), the
-- refill boundary last applied (Unix seconds, UTC), and the balance's
-- generation, bumped by every refill and every set so that credits
-- returned from an older reservation are dropped.
ALTER TABLE keygate_keys
    ADD COLUMN credits_remaining BIGINT,
    ADD COLUMN credits_refill_amount BIGINT,
    ADD COLUMN credits_refill_every TEXT,
    ADD COLUMN credits_refilled_at BIGINT,
    ADD COLUMN credits_generation BIGINT NOT NULL DEFAULT 0;
