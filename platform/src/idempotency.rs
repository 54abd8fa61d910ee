//! `Idempotency-Key` for POSTs that create: the first response to a key is
//! stored with a hash of the request; a retry with the same key and the same
//! request gets that response again, and one with a different request is a
//! conflict (the client reused a key by mistake). Keys are per account.

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

/// Remember the response to (`account`, `key`). A concurrent duplicate that
/// lost the race keeps the first stored response.
pub async fn store(db: &Db, account: &str, key: &str, request_hash: &str, status: u16, body: &str) -> Result<()> {
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
