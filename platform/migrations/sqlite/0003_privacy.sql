-- Differential-privacy budgets. A budget belongs to an owner's dataset name,
-- so every version uploaded under that name draws on one budget: re-uploading
-- the same rows must not buy a fresh one. Charges are recorded when a DP job
-- is accepted, before it reads a row, and are never refunded automatically
-- (a job that failed may already have looked at the data).
CREATE TABLE privacy_budgets (
    owner_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    dataset_name TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (owner_id, dataset_name)
);
CREATE TABLE privacy_charges (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    dataset_name TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    job_id TEXT,
    stage TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX privacy_charges_by_dataset ON privacy_charges (owner_id, dataset_name, id);
