-- Second-factor lockout: wrong codes in a row, and until when sign-in with a
-- second factor is refused (ms since the epoch).
ALTER TABLE accounts ADD COLUMN mfa_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN mfa_locked_until BIGINT;
-- Times a job's worker vanished mid-run (its lease expired); after a few the
-- job is failed instead of crashing the next worker too.
ALTER TABLE jobs ADD COLUMN lease_losses BIGINT NOT NULL DEFAULT 0;
