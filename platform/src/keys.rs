//! API keys, Stripe/GitHub style: `dpl_` + 43 base62 characters of 32 random
//! bytes + a 6-character base62 CRC-32 of those, so a scanner can tell a real
//! key from a typo offline. The secret is shown once, at creation; only its
//! SHA-256 is stored (32 random bytes need no salt, and a digest keeps lookups
//! by equality). Keys have scopes, an optional (capped) expiry, a last-used
//! time and address, and can be revoked.

use serde::Serialize;
use sqlx::{FromRow as _, Row};

use crate::audit::{self, Event, RequestMeta};
use crate::authz::{Credential, Principal, Role, Scope};
use crate::util::{base62, new_id, now_ms, random_bytes, sha256_hex};
use crate::{Db, Error, Result};

/// Every key starts with this.
pub const KEY_PREFIX: &str = "dpl_";
/// Characters of the random part.
const BODY_LEN: usize = 43;
/// Characters of the checksum.
const CHECK_LEN: usize = 6;
/// Refresh `last_used_at` at most this often (ms): a hot key must not turn
/// every read into a write.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// An API key as listed (never the secret).
#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    /// Id (`key_…`).
    pub id: String,
    /// Owner.
    pub account_id: String,
    /// Name given at creation.
    pub name: String,
    /// First characters of the secret, to recognise it.
    pub prefix: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Created, ms.
    pub created_at: i64,
    /// Expiry, ms.
    pub expires_at: Option<i64>,
    /// Last used, ms (to the minute).
    pub last_used_at: Option<i64>,
    /// Address it was last used from.
    pub last_used_ip: Option<String>,
    /// Revoked, ms.
    pub revoked_at: Option<i64>,
}

/// A new key: the secret, shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct NewApiKey {
    /// The key's record.
    pub key: ApiKey,
    /// The secret (`dpl_…`).
    pub secret: String,
}

/// CRC-32 (IEEE) of `data`.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// A fresh secret.
fn make_secret() -> String {
    let body = base62(&random_bytes::<32>(), BODY_LEN);
    let check = base62(&crc32(body.as_bytes()).to_be_bytes(), CHECK_LEN);
    format!("{KEY_PREFIX}{body}{check}")
}

/// Whether `token` has a key's shape and a valid checksum (no database needed).
pub fn looks_valid(token: &str) -> bool {
    let Some(rest) = token.strip_prefix(KEY_PREFIX) else {
        return false;
    };
    if rest.len() != BODY_LEN + CHECK_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, check) = rest.split_at(BODY_LEN);
    base62(&crc32(body.as_bytes()).to_be_bytes(), CHECK_LEN) == check
}

const COLUMNS: &str =
    "id, account_id, name, prefix, scopes, created_at, expires_at, last_used_at, last_used_ip, revoked_at";

/// An `api_keys` row as stored (scopes are space-separated).
#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    account_id: String,
    name: String,
    prefix: String,
    scopes: String,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    last_used_ip: Option<String>,
    revoked_at: Option<i64>,
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<ApiKey> {
    let r = KeyRow::from_row(r)?;
    Ok(ApiKey {
        id: r.id,
        account_id: r.account_id,
        name: r.name,
        prefix: r.prefix,
        scopes: r.scopes.split_whitespace().map(str::to_owned).collect(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        last_used_at: r.last_used_at,
        last_used_ip: r.last_used_ip,
        revoked_at: r.revoked_at,
    })
}

/// Create a key for the caller. `expires_in_days` is capped at `max_days`;
/// scopes must be known, and `admin` needs the admin role. A key can only be
/// made with scopes the creating credential has itself.
pub async fn create(
    db: &Db,
    meta: &RequestMeta,
    p: &Principal,
    name: &str,
    scopes: &[String],
    expires_in_days: Option<i64>,
    max_days: i64,
) -> Result<NewApiKey> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Error::invalid("name", "give the key a name of 1 to 100 characters"));
    }
    if scopes.is_empty() {
        return Err(Error::invalid("scopes", "choose at least one scope"));
    }
    let mut parsed = scopes.iter().map(|s| Scope::parse(s)).collect::<Result<Vec<_>>>()?;
    parsed.sort();
    parsed.dedup();
    for s in &parsed {
        if *s == Scope::Admin && p.role != Role::Admin {
            return Err(Error::Forbidden(
                "only admins can create keys with the `admin` scope".into(),
            ));
        }
        if !p.has_scope(*s) {
            return Err(Error::Forbidden(format!(
                "this credential cannot grant `{}`, which it lacks",
                s.as_str()
            )));
        }
    }
    let days = match expires_in_days {
        Some(d) if d < 1 => return Err(Error::invalid("expires_in_days", "must be at least 1")),
        Some(d) => d.min(max_days),
        None => max_days,
    };
    let now = now_ms();
    // A key made by a key never outlives it.
    let mut expires_at = now + days * 86_400_000;
    if let Credential::ApiKey {
        expires_at: Some(own), ..
    } = &p.credential
    {
        expires_at = expires_at.min(*own);
    }
    if !p.covers_key(&parsed, Some(expires_at)) {
        return Err(Error::Forbidden(
            "this credential cannot grant a key wider or longer-lived than itself".into(),
        ));
    }
    let secret = make_secret();
    let key = ApiKey {
        id: new_id("key"),
        account_id: p.account_id.clone(),
        name: name.to_owned(),
        prefix: secret[..KEY_PREFIX.len() + 8].to_owned(),
        scopes: parsed.iter().map(|s| s.as_str().to_owned()).collect(),
        created_at: now,
        expires_at: Some(expires_at),
        last_used_at: None,
        last_used_ip: None,
        revoked_at: None,
    };
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO api_keys (id, account_id, name, prefix, secret_hash, scopes, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&key.id)
    .bind(&key.account_id)
    .bind(&key.name)
    .bind(&key.prefix)
    .bind(sha256_hex(secret.as_bytes()))
    .bind(key.scopes.join(" "))
    .bind(key.created_at)
    .bind(key.expires_at)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        meta,
        &Event::by(p, "apikey_created", Some(&key.id))
            .with(serde_json::json!({"scopes": key.scopes, "expires_at": key.expires_at})),
    )
    .await?;
    tx.commit().await?;
    Ok(NewApiKey { key, secret })
}

/// The caller's keys, newest first.
pub async fn list(db: &Db, account_id: &str) -> Result<Vec<ApiKey>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY id DESC"
    )))
    .bind(account_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Revoke one of the caller's keys (idempotent).
pub async fn revoke(db: &Db, meta: &RequestMeta, p: &Principal, key_id: &str) -> Result<ApiKey> {
    let mut tx = db.pool.begin().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_keys WHERE id = $1"
    )))
    .bind(key_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::NotFound("API key".into()))?;
    let mut key = from_row(&row)?;
    // Keys are managed by their owner or an admin; a key may only revoke
    // keys it could have made (no wider scopes, no longer life).
    if key.account_id != p.account_id && !p.is_admin() {
        return Err(Error::NotFound("API key".into()));
    }
    let scopes: Vec<Scope> = key.scopes.iter().filter_map(|s| Scope::parse(s).ok()).collect();
    if !p.is_admin() && !p.covers_key(&scopes, key.expires_at) {
        return Err(Error::Forbidden(
            "this credential cannot revoke a key wider or longer-lived than itself".into(),
        ));
    }
    if key.revoked_at.is_none() {
        let now = now_ms();
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2")
            .bind(now)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        key.revoked_at = Some(now);
        audit::record(&mut tx, meta, &Event::by(p, "apikey_revoked", Some(key_id))).await?;
    }
    tx.commit().await?;
    Ok(key)
}

/// The principal behind a key secret, if it is valid, unexpired, unrevoked and
/// its account enabled. `None` for anything else (the caller answers 401).
pub async fn authenticate(db: &Db, secret: &str, ip: Option<&str>) -> Result<Option<Principal>> {
    if !looks_valid(secret) {
        return Ok(None);
    }
    let now = now_ms();
    let Some(row) = sqlx::query(
        "SELECT k.id AS key_id, k.scopes, k.expires_at, k.last_used_at, a.id, a.email, a.role FROM api_keys k \
         JOIN accounts a ON a.id = k.account_id \
         WHERE k.secret_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2) \
         AND a.disabled_at IS NULL",
    )
    .bind(sha256_hex(secret.as_bytes()))
    .bind(now)
    .fetch_optional(&db.pool)
    .await?
    else {
        return Ok(None);
    };
    let key_id: String = row.try_get("key_id")?;
    let last: Option<i64> = row.try_get("last_used_at")?;
    if last.is_none_or(|l| now - l >= LAST_USED_GRANULARITY_MS) {
        sqlx::query("UPDATE api_keys SET last_used_at = $1, last_used_ip = $2 WHERE id = $3")
            .bind(now)
            .bind(ip)
            .bind(&key_id)
            .execute(&db.pool)
            .await?;
    }
    let scopes = row
        .try_get::<String, _>("scopes")?
        .split_whitespace()
        .filter_map(|s| Scope::parse(s).ok())
        .collect();
    Ok(Some(Principal {
        account_id: row.try_get("id")?,
        email: row.try_get("email")?,
        role: Role::parse(&row.try_get::<String, _>("role")?),
        credential: Credential::ApiKey {
            key_id,
            scopes,
            expires_at: row.try_get("expires_at")?,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_prefix_length_and_checksum() {
        let s = make_secret();
        assert!(s.starts_with("dpl_") && s.len() == 4 + 43 + 6, "{s}");
        assert!(looks_valid(&s));
        // Any single changed character breaks the checksum.
        let mut bytes = s.into_bytes();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        assert!(!looks_valid(&String::from_utf8(bytes).unwrap()));
        assert!(!looks_valid("dpl_short"));
    }

    proptest::proptest! {
        /// CRC-32 catches every single-character change of a key.
        #[test]
        fn any_changed_character_fails_the_checksum(pos in 4usize..53, replacement in "[0-9A-Za-z]") {
            let secret = make_secret();
            let mut chars: Vec<char> = secret.chars().collect();
            let new = replacement.chars().next().unwrap();
            proptest::prop_assume!(chars[pos] != new);
            chars[pos] = new;
            let changed: String = chars.into_iter().collect();
            proptest::prop_assert!(!looks_valid(&changed));
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
