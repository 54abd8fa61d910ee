//! Datasets as the platform sees them: an owned object in storage plus opaque
//! JSON metadata written by whoever understands the content (for tables, the
//! schema, row count and profile). The platform never looks inside.

use serde::Serialize;
use sqlx::FromRow as _;

use crate::audit::{self, Event, RequestMeta};
use crate::authz::Principal;
use crate::util::now_ms;
use crate::{Db, Error, Result};

/// A stored dataset.
#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    /// Id (`ds_…`).
    pub id: String,
    /// Owner account.
    pub owner_id: String,
    /// Display name.
    pub name: String,
    /// Media type of the stored object.
    pub media_type: String,
    /// Stored size in bytes.
    pub size_bytes: i64,
    /// Object key.
    pub object_key: String,
    /// Content-specific metadata.
    pub metadata: serde_json::Value,
    /// Created, ms.
    pub created_at: i64,
}

/// A dataset to register (its object is already stored).
#[derive(Debug, Clone)]
pub struct NewDataset<'a> {
    /// Id, chosen before upload so the object key can contain it.
    pub id: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Media type.
    pub media_type: &'a str,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Object key.
    pub object_key: &'a str,
    /// Metadata.
    pub metadata: &'a serde_json::Value,
}

const COLUMNS: &str = "id, owner_id, name, media_type, size_bytes, object_key, metadata, created_at";

/// A `datasets` row as stored (metadata is JSON text).
#[derive(sqlx::FromRow)]
struct DatasetRow {
    id: String,
    owner_id: String,
    name: String,
    media_type: String,
    size_bytes: i64,
    object_key: String,
    metadata: String,
    created_at: i64,
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Dataset> {
    let r = DatasetRow::from_row(r)?;
    Ok(Dataset {
        id: r.id,
        owner_id: r.owner_id,
        name: r.name,
        media_type: r.media_type,
        size_bytes: r.size_bytes,
        object_key: r.object_key,
        metadata: serde_json::from_str(&r.metadata).map_err(|e| Error::Internal(format!("dataset metadata: {e}")))?,
        created_at: r.created_at,
    })
}

/// Register a stored object as the caller's dataset.
pub async fn create(db: &Db, meta: &RequestMeta, p: &Principal, d: &NewDataset<'_>) -> Result<Dataset> {
    let now = now_ms();
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO datasets (id, owner_id, name, media_type, size_bytes, object_key, metadata, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(d.id)
    .bind(&p.account_id)
    .bind(d.name)
    .bind(d.media_type)
    .bind(d.size_bytes)
    .bind(d.object_key)
    .bind(d.metadata.to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        meta,
        &Event::by(p, "dataset_created", Some(d.id)).with(serde_json::json!({"size_bytes": d.size_bytes})),
    )
    .await?;
    tx.commit().await?;
    get(db, d.id).await
}

/// One live dataset (no authorization: callers check ownership).
pub async fn get(db: &Db, id: &str) -> Result<Dataset> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM datasets WHERE id = $1 AND deleted_at IS NULL"
    )))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?
    .ok_or_else(|| Error::NotFound("dataset".into()))?;
    from_row(&row)
}

/// The owner's live datasets, newest first, before `starting_after`.
pub async fn list(db: &Db, owner: &str, starting_after: Option<&str>, limit: i64) -> Result<Vec<Dataset>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM datasets WHERE owner_id = $1 AND deleted_at IS NULL AND ($2 = '' OR id < $2) \
         ORDER BY id DESC LIMIT $3"
    )))
    .bind(owner)
    .bind(starting_after.unwrap_or(""))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The owner's live datasets called `name`, oldest first: version `n` of a
/// name is the `n`-th upload under it.
pub async fn versions(db: &Db, owner: &str, name: &str) -> Result<Vec<Dataset>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM datasets WHERE owner_id = $1 AND name = $2 AND deleted_at IS NULL ORDER BY id"
    )))
    .bind(owner)
    .bind(name)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Mark a dataset deleted (the caller removes its objects afterwards).
pub async fn delete(db: &Db, meta: &RequestMeta, p: &Principal, id: &str) -> Result<()> {
    let mut tx = db.pool.begin().await?;
    let n = sqlx::query("UPDATE datasets SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if n.rows_affected() == 0 {
        return Err(Error::NotFound("dataset".into()));
    }
    audit::record(&mut tx, meta, &Event::by(p, "dataset_deleted", Some(id))).await?;
    tx.commit().await?;
    Ok(())
}
