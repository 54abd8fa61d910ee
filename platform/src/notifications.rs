//! Notifications: short messages to an account about something that
//! happened to its resources (a job finished, a sale, a refund), written in
//! the same transaction as the change they report, listed newest first and
//! marked read. Any product on the platform queues them; the marketplace and
//! the job queue do today.

use serde::Serialize;
use sqlx::Row;

use crate::util::{new_id, now_ms};
use crate::{Db, Error, Result};

/// A notification.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// Id.
    pub id: String,
    /// `job_succeeded`, `job_failed`, `sale_made`, `purchase_completed`, `refund`.
    pub kind: String,
    /// For people.
    pub message: String,
    /// Ids involved.
    pub data: serde_json::Value,
    /// When, ms.
    pub created_at: i64,
    /// Read, ms.
    pub read_at: Option<i64>,
}

/// Queue a notification for `account` on `conn`.
pub async fn notify_raw(
    conn: &mut sqlx::AnyConnection,
    account: &str,
    kind: &str,
    message: &str,
    data: &serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO notifications (id, account_id, kind, message, data, created_at, read_at) \
         VALUES ($1, $2, $3, $4, $5, $6, NULL)",
    )
    .bind(new_id("ntf"))
    .bind(account)
    .bind(kind)
    .bind(message)
    .bind(data.to_string())
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

/// `account`'s notifications, newest first.
pub async fn notifications(
    db: &Db,
    account: &str,
    unread_only: bool,
    starting_after: Option<&str>,
    limit: i64,
) -> Result<Vec<Notification>> {
    let rows = sqlx::query(
        "SELECT id, kind, message, data, created_at, read_at FROM notifications WHERE account_id = $1 \
         AND ($2 = 0 OR read_at IS NULL) AND ($3 = '' OR id < $3) ORDER BY id DESC LIMIT $4",
    )
    .bind(account)
    .bind(i64::from(unread_only))
    .bind(starting_after.unwrap_or_default())
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            let data: String = r.try_get("data")?;
            Ok(Notification {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                message: r.try_get("message")?,
                data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                created_at: r.try_get("created_at")?,
                read_at: r.try_get("read_at")?,
            })
        })
        .collect()
}

/// Mark one of `account`'s notifications read.
pub async fn mark_read(db: &Db, account: &str, id: &str) -> Result<()> {
    let n = sqlx::query("UPDATE notifications SET read_at = $1 WHERE id = $2 AND account_id = $3 AND read_at IS NULL")
        .bind(now_ms())
        .bind(id)
        .bind(account)
        .execute(&db.pool)
        .await?
        .rows_affected();
    if n == 0 {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM notifications WHERE id = $1 AND account_id = $2")
                .bind(id)
                .bind(account)
                .fetch_optional(&db.pool)
                .await?;
        if exists.is_none() {
            return Err(Error::NotFound("notification".into()));
        }
    }
    Ok(())
}

/// How many of `account`'s notifications are unread (the console's badge).
pub async fn unread_count(db: &Db, account: &str) -> Result<i64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE account_id = $1 AND read_at IS NULL")
        .bind(account)
        .fetch_one(&db.pool)
        .await?;
    Ok(n)
}

/// Mark every one of `account`'s notifications read; how many were unread.
pub async fn mark_all_read(db: &Db, account: &str) -> Result<u64> {
    Ok(
        sqlx::query("UPDATE notifications SET read_at = $1 WHERE account_id = $2 AND read_at IS NULL")
            .bind(now_ms())
            .bind(account)
            .execute(&db.pool)
            .await?
            .rows_affected(),
    )
}
