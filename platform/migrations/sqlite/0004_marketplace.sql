-- Marketplace: listings of job outputs, purchases through a payment provider,
-- a double-entry ledger in integer minor units, webhook deduplication,
-- notifications. Money is never a float.
CREATE TABLE seller_accounts (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    provider_account_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, provider)
);
CREATE TABLE listings (
    id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    job_id TEXT NOT NULL,
    output_name TEXT NOT NULL,
    output_key TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    tags TEXT NOT NULL,
    category TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    license TEXT NOT NULL,
    preview TEXT NOT NULL,
    quality_score REAL,
    privacy_score REAL NOT NULL,
    status TEXT NOT NULL,
    sales BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX listings_by_seller ON listings (seller_id, id);
CREATE INDEX listings_by_status ON listings (status, created_at);
-- Full-text index, kept in step by the code in the listing's transaction.
CREATE VIRTUAL TABLE listings_fts USING fts5(listing_id UNINDEXED, title, description, tags, tokenize = 'porter unicode61');
CREATE TABLE purchases (
    id TEXT PRIMARY KEY,
    listing_id TEXT NOT NULL REFERENCES listings(id),
    buyer_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    seller_id TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    fee_minor BIGINT NOT NULL,
    seller_minor BIGINT NOT NULL,
    provider TEXT NOT NULL,
    provider_ref TEXT,
    checkout_url TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT,
    refunded_at BIGINT
);
CREATE UNIQUE INDEX purchases_by_provider_ref ON purchases (provider, provider_ref);
CREATE INDEX purchases_by_buyer ON purchases (buyer_id, id);
CREATE INDEX purchases_by_listing ON purchases (listing_id, status);
CREATE TABLE ledger_entries (
    id TEXT PRIMARY KEY,
    txn_id TEXT NOT NULL,
    purchase_id TEXT NOT NULL REFERENCES purchases(id),
    account TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- A purchase is charged once and refunded once, whoever races to do it.
CREATE UNIQUE INDEX ledger_once ON ledger_entries (purchase_id, kind, account);
CREATE TABLE webhook_events (
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (provider, event_id)
);
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    read_at BIGINT
);
CREATE INDEX notifications_by_account ON notifications (account_id, id);
CREATE TABLE listing_downloads (
    id TEXT PRIMARY KEY,
    listing_id TEXT NOT NULL,
    purchase_id TEXT NOT NULL,
    buyer_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX listing_downloads_by_listing ON listing_downloads (listing_id, created_at);
-- The fake payment provider's own books (what Stripe would hold).
CREATE TABLE fake_payments (
    id TEXT PRIMARY KEY,
    reference TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    destination TEXT NOT NULL,
    application_fee_minor BIGINT NOT NULL,
    description TEXT NOT NULL,
    return_url TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
