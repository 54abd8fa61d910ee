//! `Idempotency-Key` for POSTs that create: the first response to a key is
//! stored with a hash of the request; a retry with the same key and the same
//! request gets that response again, and one with a different request is a
//! conflict (the client reused a key by mistake). Keys are per account.
//!
//! A key is *reserved* before the work starts ([`begin`]): of concurrent
//! requests with one key exactly one does the work, the others are told it
//! is in progress (409) instead of each creating their own. The reservation
//! is completed with the answer ([`store`]) or released if the work failed
//! ([`release`]), so a retry can try again.

use sqlx::Row;

use crate::util::now_ms;
use crate::{Db, Error, Result};

/// A stored response.
#[derive(Debug, Clone)]
pub struct Stored {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
}

/// Status of a reservation whose work is still running.
const IN_PROGRESS: i64 = 0;
/// A reservation older than this is from a request that died mid-way (a
/// crashed server): another request may take it over.
const STALE_MS: i64 = 10 * 60 * 1000;

/// What [`begin`] found.
#[derive(Debug, Clone)]
pub enum Begin {
    /// The key is now reserved for this request: do the work, then
    /// [`store`] the answer or [`release`] the key.
    Reserved,
    /// The same request was answered before: send this again.
    Replay(Stored),
}

/// Reserve (`account`, `key`) for a request hashing to `request_hash`, or
/// find its stored answer. [`Error::Conflict`] if the key belongs to a
/// different request, or the same request is still being worked on.
pub async fn begin(db: &Db, account: &str, key: &str, request_hash: &str) -> Result<Begin> {
    if key.is_empty() || key.len() > 255 {
        return Err(Error::invalid("Idempotency-Key", "use 1 to 255 characters"));
    }
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (account_id, key, request_hash, status, response, created_at) VALUES ($1, $2, $3, $4, '', $5)",
    )
    .bind(account)
    .bind(key)
    .bind(request_hash)
    .bind(IN_PROGRESS)
    .bind(now)
    .execute(&db.pool)
    .await;
    match inserted {
        Ok(_) => return Ok(Begin::Reserved),
        Err(e) if crate::db::is_unique_violation(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let row = sqlx::query(
        "SELECT request_hash, status, response, created_at FROM idempotency_keys WHERE account_id = $1 AND key = $2",
    )
    .bind(account)
    .bind(key)
    .fetch_one(&db.pool)
    .await?;
    let stored_hash: String = row.try_get("request_hash")?;
    if stored_hash != request_hash {
        return Err(Error::Conflict(
            "this Idempotency-Key was already used with a different request".into(),
        ));
    }
    let status: i64 = row.try_get("status")?;
    if status != IN_PROGRESS {
        return Ok(Begin::Replay(Stored {
            status: u16::try_from(status).unwrap_or(200),
            body: row.try_get("response")?,
        }));
    }
    let created: i64 = row.try_get("created_at")?;
    if now - created > STALE_MS {
        // Take the dead request's reservation over; of several takers only
        // the one whose update lands wins.
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET created_at = $1 WHERE account_id = $2 AND key = $3 AND status = $4 AND created_at = $5",
        )
        .bind(now)
        .bind(account)
        .bind(key)
        .bind(IN_PROGRESS)
        .bind(created)
        .execute(&db.pool)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Begin::Reserved);
        }
    }
    Err(Error::Conflict(
        "a request with this Idempotency-Key is still in progress; retry it shortly".into(),
    ))
}

/// Give up a reservation whose work failed, so a retry can do it.
pub async fn release(db: &Db, account: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND status = $3")
        .bind(account)
        .bind(key)
        .bind(IN_PROGRESS)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The response stored for (`account`, `key`), if the request matches;
/// [`Error::Conflict`] if the key was used for a different request.
pub async fn lookup(db: &Db, account: &str, key: &str, request_hash: &str) -> Result<Option<Stored>> {
    if key.is_empty() || key.len() > 255 {
        return Err(Error::invalid("Idempotency-Key", "use 1 to 255 characters"));
    }
    let row =
        sqlx::query("SELECT request_hash, status, response FROM idempotency_keys WHERE account_id = $1 AND key = $2")
            .bind(account)
            .bind(key)
            .fetch_optional(&db.pool)
            .await?;
    let Some(row) = row else { return Ok(None) };
    if row.try_get::<i64, _>("status")? == IN_PROGRESS {
        return Ok(None);
    }
    let stored_hash: String = row.try_get("request_hash")?;
    if stored_hash != request_hash {
        return Err(Error::Conflict(
            "this Idempotency-Key was already used with a different request".into(),
        ));
    }
    Ok(Some(Stored {
        status: u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(200),
        body: row.try_get("response")?,
    }))
}

/// Remember the response to (`account`, `key`): completes the reservation
/// [`begin`] made (or, without one, stores it; a concurrent duplicate that
/// lost the race keeps the first stored response).
pub async fn store(db: &Db, account: &str, key: &str, request_hash: &str, status: u16, body: &str) -> Result<()> {
    let updated = sqlx::query(
        "UPDATE idempotency_keys SET status = $1, response = $2 WHERE account_id = $3 AND key = $4 AND request_hash = $5 AND status = $6",
    )
    .bind(i64::from(status))
    .bind(body)
    .bind(account)
    .bind(key)
    .bind(request_hash)
    .bind(IN_PROGRESS)
    .execute(&db.pool)
    .await?;
    if updated.rows_affected() == 1 {
        return Ok(());
    }
    let r = sqlx::query(
        "INSERT INTO idempotency_keys (account_id, key, request_hash, status, response, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(account)
    .bind(key)
    .bind(request_hash)
    .bind(i64::from(status))
    .bind(body)
    .bind(now_ms())
    .execute(&db.pool)
    .await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if crate::db::is_unique_violation(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
