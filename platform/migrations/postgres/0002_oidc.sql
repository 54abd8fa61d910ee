-- Pending OpenID Connect sign-ins: one row per authorization request, keyed
-- by the hash of its `state`, consumed (deleted) by the callback.
CREATE TABLE oidc_states (
    state_hash TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
