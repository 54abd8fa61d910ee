//! The append-only audit log. Events are written on the same connection (in
//! the same transaction) as the change they describe, so a change without
//! its event — or an event without its change — cannot be committed. Event
//! names follow OWASP's logging vocabulary; no event ever holds a secret.

use sqlx::AnyConnection;

use crate::Result;
use crate::util::now_ms;

/// Who asked, from where: carried from the edge (REST, Flight) to every write.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The request id returned to the client (`X-Request-Id`).
    pub request_id: String,
    /// Client address, if known.
    pub ip: Option<String>,
}

/// Whether the audited attempt succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did.
    Success,
    /// It was refused.
    Failure,
}

/// One audit event.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// Account acting (none for failed anonymous attempts).
    pub actor: Option<&'a str>,
    /// API key used, if any.
    pub api_key_id: Option<&'a str>,
    /// What happened (`authn_login_success`, `dataset_create`, …).
    pub action: &'a str,
    /// The resource acted on.
    pub target: Option<&'a str>,
    /// Success or failure.
    pub outcome: Outcome,
    /// Non-secret details as JSON.
    pub metadata: Option<serde_json::Value>,
}

impl<'a> Event<'a> {
    /// A successful action by an authenticated caller.
    pub fn by(p: &'a crate::authz::Principal, action: &'a str, target: Option<&'a str>) -> Self {
        Event {
            actor: Some(&p.account_id),
            api_key_id: p.api_key_id(),
            action,
            target,
            outcome: Outcome::Success,
            metadata: None,
        }
    }

    /// The same event with non-secret details.
    pub fn with(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

/// Append `event` on `conn` (pass the transaction that makes the change).
pub async fn record(conn: &mut AnyConnection, meta: &RequestMeta, event: &Event<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (at, actor, api_key_id, action, target, outcome, request_id, ip, metadata) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now_ms())
    .bind(event.actor)
    .bind(event.api_key_id)
    .bind(event.action)
    .bind(event.target)
    .bind(match event.outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
    })
    .bind(&meta.request_id)
    .bind(meta.ip.as_deref())
    .bind(event.metadata.as_ref().map(serde_json::Value::to_string))
    .execute(conn)
    .await?;
    Ok(())
}

/// A stored audit event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredEvent {
    /// Sequence number (monotonic).
    pub seq: i64,
    /// When, ms since the epoch.
    pub at: i64,
    /// Acting account.
    pub actor: Option<String>,
    /// API key used.
    pub api_key_id: Option<String>,
    /// Action name.
    pub action: String,
    /// Target resource.
    pub target: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Request id.
    pub request_id: Option<String>,
    /// Client address.
    pub ip: Option<String>,
}

/// The newest events first, before sequence number `before` if given.
pub async fn list(db: &crate::Db, before: Option<i64>, limit: i64) -> Result<Vec<StoredEvent>> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT seq, at, actor, api_key_id, action, target, outcome, request_id, ip FROM audit_events \
         WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredEvent {
                seq: r.try_get("seq")?,
                at: r.try_get("at")?,
                actor: r.try_get("actor")?,
                api_key_id: r.try_get("api_key_id")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                outcome: r.try_get("outcome")?,
                request_id: r.try_get("request_id")?,
                ip: r.try_get("ip")?,
            })
        })
        .collect()
}
