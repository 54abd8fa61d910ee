//! What operators do, each call requiring the `admin` scope (which only an
//! admin account's credentials carry) before it touches anything: every
//! door's admin pages and endpoints call these instead of checking the role
//! themselves.

use doppel_market::{LedgerEntry, Listing, Purchase};
use doppel_platform::Result;
use doppel_platform::accounts::Account;
use doppel_platform::audit::{RequestMeta, StoredEvent};
use doppel_platform::authz::{Principal, Scope, require};
use doppel_platform::jobs::Job;

use crate::AppState;

/// Accounts, by id, from `starting_after`.
pub async fn users(state: &AppState, p: &Principal, starting_after: Option<&str>, limit: i64) -> Result<Vec<Account>> {
    require(p, Scope::Admin)?;
    state.accounts.list(starting_after, limit).await
}

/// Disable (no sign-in, sessions and keys stop working) or enable an account.
pub async fn set_disabled(
    state: &AppState,
    meta: &RequestMeta,
    p: &Principal,
    id: &str,
    disabled: bool,
) -> Result<Account> {
    require(p, Scope::Admin)?;
    state.accounts.set_disabled(meta, p, id, disabled).await
}

/// Every account's jobs, newest first.
pub async fn jobs(state: &AppState, p: &Principal, starting_after: Option<&str>, limit: i64) -> Result<Vec<Job>> {
    require(p, Scope::Admin)?;
    state.queue.list(None, starting_after, limit).await
}

/// The audit log, newest first, before sequence number `before`.
pub async fn audit(state: &AppState, p: &Principal, before: Option<i64>, limit: i64) -> Result<Vec<StoredEvent>> {
    require(p, Scope::Admin)?;
    doppel_platform::audit::list(&state.db, before, limit).await
}

/// Ledger lines, newest first, optionally of one purchase.
pub async fn ledger(
    state: &AppState,
    p: &Principal,
    purchase_id: Option<&str>,
    limit: i64,
) -> Result<Vec<LedgerEntry>> {
    require(p, Scope::Admin)?;
    state.market.ledger(purchase_id, limit).await
}

/// Take a listing down (buyers keep what they bought).
pub async fn suspend(
    state: &AppState,
    meta: &RequestMeta,
    p: &Principal,
    listing_id: &str,
    reason: &str,
) -> Result<Listing> {
    state.market.suspend_listing(meta, p, listing_id, reason).await
}

/// Refund a completed purchase through the provider (access ends).
pub async fn refund(state: &AppState, meta: &RequestMeta, p: &Principal, purchase_id: &str) -> Result<Purchase> {
    state.market.refund(meta, p, purchase_id).await
}

/// Settle pending purchases whose webhook never came; how many changed.
pub async fn reconcile(state: &AppState, p: &Principal) -> Result<usize> {
    require(p, Scope::Admin)?;
    state.market.reconcile().await
}
