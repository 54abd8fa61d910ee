//! Accounts and sign-in: sign-up and login with argon2id, opaque session
//! tokens stored as SHA-256 (revocable), TOTP second factor with hashed
//! recovery codes and replay protection, and resolving a bearer token (session
//! or API key) to a [`Principal`].

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use sqlx::Row;

use crate::audit::{self, Event, Outcome, RequestMeta};
use crate::authz::{Credential, Principal, Role};
use crate::keys;
use crate::util::{base62, ct_eq, new_id, now_ms, random_bytes, sha256_hex};
use crate::{Db, Error, Result};

/// Session tokens start with this, so a leaked one is recognisable.
pub const SESSION_PREFIX: &str = "dps_";

/// An account as shown to its owner and to admins (never the hashes).
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    /// Id (`acct_…`).
    pub id: String,
    /// E-mail (lower-cased).
    pub email: String,
    /// Role.
    pub role: Role,
    /// Created, ms since the epoch.
    pub created_at: i64,
    /// Whether TOTP is on.
    pub totp_enabled: bool,
    /// Set when an admin disabled the account.
    pub disabled_at: Option<i64>,
}

/// A fresh session: the token is shown once.
#[derive(Debug, Clone, Serialize)]
pub struct NewSession {
    /// Bearer token (`dps_…`).
    pub token: String,
    /// Session id.
    pub session_id: String,
    /// Expiry, ms since the epoch.
    pub expires_at: i64,
    /// The account.
    pub account: Account,
}

/// TOTP enrolment: what an authenticator app needs.
#[derive(Debug, Clone, Serialize)]
pub struct TotpEnrolment {
    /// Base32 secret.
    pub secret: String,
    /// `otpauth://` URL for a QR code.
    pub otpauth_url: String,
}

/// Account operations.
#[derive(Clone)]
pub struct Accounts {
    db: Db,
    settings: crate::settings::AuthSettings,
    key: Vec<u8>,
    /// Password hashes in flight: each argon2id hash holds 19 MiB, so 400
    /// sign-ins at once would hold 7.6 GiB. Callers wait here (briefly).
    hashing: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("backend", &self.db.backend)
            .finish_non_exhaustive()
    }
}

const ACCOUNT_COLUMNS: &str = "id, email, role, created_at, totp_secret, disabled_at";

/// An `accounts` row as read by [`ACCOUNT_COLUMNS`] (the sealed TOTP secret
/// only tells whether TOTP is on).
#[derive(sqlx::FromRow)]
struct AccountRow {
    id: String,
    email: String,
    role: String,
    created_at: i64,
    totp_secret: Option<String>,
    disabled_at: Option<i64>,
}

fn account_from(row: &sqlx::any::AnyRow) -> Result<Account> {
    let r = <AccountRow as sqlx::FromRow<'_, sqlx::any::AnyRow>>::from_row(row)?;
    Ok(Account {
        id: r.id,
        email: r.email,
        role: Role::parse(&r.role),
        created_at: r.created_at,
        totp_enabled: r.totp_secret.is_some(),
        disabled_at: r.disabled_at,
    })
}

impl Accounts {
    /// Account operations over `db`; `signing_key` protects TOTP secrets at rest.
    pub fn new(db: Db, settings: crate::settings::AuthSettings, signing_key: Vec<u8>) -> Self {
        let permits = match settings.hash_concurrency {
            0 => std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            n => n,
        };
        Accounts {
            db,
            settings,
            key: signing_key,
            hashing: std::sync::Arc::new(tokio::sync::Semaphore::new(permits)),
        }
    }

    /// A turn at the password hasher, or 429 after `hash_wait_ms` in line.
    async fn hash_turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let wait = std::time::Duration::from_millis(self.settings.hash_wait_ms);
        match tokio::time::timeout(wait, std::sync::Arc::clone(&self.hashing).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::TooManyAttempts {
                message: "too many sign-ins at once; try again in a moment".into(),
                retry_after_s: 1,
            }),
        }
    }

    fn hasher(&self) -> Argon2<'static> {
        if self.settings.insecure_fast_hashing {
            // Test suites only: hashing at OWASP cost would dominate their time.
            let params = Params::new(256, 1, 1, None).unwrap_or_default();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        } else {
            // argon2id, m = 19 MiB, t = 2, p = 1: OWASP's minimum.
            Argon2::default()
        }
    }

    async fn hash_password(&self, password: String) -> Result<String> {
        let hasher = self.hasher();
        let _turn = self.hash_turn().await?;
        tokio::task::spawn_blocking(move || {
            hasher
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::Internal(format!("password hashing: {e}")))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    async fn verify_password(&self, password: String, hash: Option<String>) -> Result<bool> {
        let hasher = self.hasher();
        let _turn = self.hash_turn().await?;
        Ok(tokio::task::spawn_blocking(move || {
            // Unknown accounts verify against a fixed hash so both paths cost the same.
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let hash = hash.unwrap_or_else(|| {
                DUMMY
                    .get_or_init(|| {
                        hasher
                            .hash_password(b"no such account")
                            .map(|h| h.to_string())
                            .unwrap_or_default()
                    })
                    .clone()
            });
            hasher.verify_password(password.as_bytes(), hash.as_str()).is_ok()
        })
        .await
        .unwrap_or(false))
    }

    /// Create an account. E-mails are unique (case-insensitively).
    pub async fn sign_up(&self, meta: &RequestMeta, email: &str, password: &str) -> Result<Account> {
        let email = normalise_email(email)?;
        if password.chars().count() < self.settings.password_min_length {
            return Err(Error::invalid(
                "password",
                format!("use at least {} characters", self.settings.password_min_length),
            ));
        }
        if password.len() > 1024 {
            return Err(Error::invalid("password", "use at most 1024 bytes"));
        }
        let hash = self.hash_password(password.to_owned()).await?;
        let role = if self
            .settings
            .admin_emails
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&email))
        {
            Role::Admin
        } else {
            Role::User
        };
        let mut tx = self.db.pool.begin().await?;
        let (id, now) = insert_account(
            &mut tx,
            meta,
            &email,
            Some(&hash),
            role,
            serde_json::json!({"role": role.as_str()}),
        )
        .await?;
        tx.commit().await?;
        Ok(Account {
            id,
            email,
            role,
            created_at: now,
            totp_enabled: false,
            disabled_at: None,
        })
    }

    /// Check a password (and second factor, when enrolled) and open a session.
    ///
    /// An account with a second factor is checked in one step: without a code
    /// the answer is [`Error::MfaRequired`] whatever the password, and with
    /// one every failure reads the same, so the password cannot be tested
    /// apart from the code. Wrong attempts in a row lock the second factor
    /// for `mfa_lockout_seconds`, doubling each time (429).
    pub async fn log_in(
        &self,
        meta: &RequestMeta,
        email: &str,
        password: &str,
        totp_code: Option<&str>,
        recovery_code: Option<&str>,
    ) -> Result<NewSession> {
        let email = email.trim().to_ascii_lowercase();
        if password.len() > 1024 {
            return Err(Error::Unauthenticated("wrong e-mail or password".into()));
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS}, password_hash, totp_last_step, mfa_locked_until FROM accounts WHERE email = $1"
        )))
        .bind(&email)
        .fetch_optional(&self.db.pool)
        .await?;
        let hash = match &row {
            Some(r) => r.try_get::<Option<String>, _>("password_hash")?,
            None => None,
        };
        let mfa = match &row {
            Some(r) => r.try_get::<Option<String>, _>("totp_secret")?.is_some(),
            None => false,
        };
        let actor = match &row {
            Some(r) => Some(r.try_get::<String, _>("id")?),
            None => None,
        };
        if mfa && totp_code.is_none() && recovery_code.is_none() {
            // The same hashing cost as a real check, and no verdict on the
            // password: it is only ever judged together with the code.
            let _ = self.verify_password(password.to_owned(), None).await?;
            return Err(Error::MfaRequired);
        }
        if mfa && let Some(r) = &row {
            self.check_mfa_lock(r.try_get("mfa_locked_until")?)?;
        }
        let ok = self.verify_password(password.to_owned(), hash.clone()).await? && hash.is_some();
        let wrong = if mfa {
            "wrong e-mail, password or code"
        } else {
            "wrong e-mail or password"
        };
        let account = match (&row, ok) {
            (Some(r), true) => account_from(r)?,
            _ => {
                self.audit_failure(meta, actor.as_deref(), "authn_login_fail").await?;
                if mfa && let Some(id) = &actor {
                    self.mfa_failed(id).await?;
                }
                return Err(Error::Unauthenticated(wrong.into()));
            }
        };
        if account.totp_enabled {
            let Some(r) = row.as_ref() else {
                return Err(Error::Internal("account row vanished".into()));
            };
            let sealed: String = r.try_get::<Option<String>, _>("totp_secret")?.unwrap_or_default();
            let last_step: Option<i64> = r.try_get("totp_last_step")?;
            if let Err(e) = self
                .second_factor(&account.id, &sealed, last_step, totp_code, recovery_code)
                .await
            {
                self.audit_failure(meta, Some(&account.id), e).await?;
                self.mfa_failed(&account.id).await?;
                return Err(Error::Unauthenticated(wrong.into()));
            }
            self.mfa_succeeded(&account.id).await?;
        }
        // Only now, with every factor checked: otherwise "disabled" would
        // tell a guesser that the password was right.
        if account.disabled_at.is_some() {
            self.audit_failure(meta, Some(&account.id), "authn_login_fail_disabled")
                .await?;
            return Err(Error::Unauthenticated("this account is disabled".into()));
        }
        self.open_session(meta, account, "authn_login_success").await
    }

    /// Check a TOTP code (once per step: a replay fails) or use up a
    /// recovery code. The error is the audit action to record.
    async fn second_factor(
        &self,
        account: &str,
        sealed: &str,
        last_step: Option<i64>,
        totp_code: Option<&str>,
        recovery_code: Option<&str>,
    ) -> Result<(), &'static str> {
        match (totp_code, recovery_code) {
            (Some(code), _) => {
                let secret = self.unseal(account, sealed).map_err(|_| "authn_mfa_fail")?;
                let step = totp_match(&secret, code, now_ms() / 1000).ok_or("authn_mfa_fail")?;
                // Each code works once: a step at or before the last accepted one is a replay.
                let updated = sqlx::query(
                    "UPDATE accounts SET totp_last_step = $1 WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
                )
                .bind(step)
                .bind(account)
                .execute(&self.db.pool)
                .await
                .map_err(|_| "authn_mfa_fail")?;
                if updated.rows_affected() == 0 || last_step.is_some_and(|l| l >= step) {
                    return Err("authn_mfa_replay");
                }
                Ok(())
            }
            (None, Some(code)) => {
                let used = sqlx::query(
                    "UPDATE recovery_codes SET used_at = $1 WHERE account_id = $2 AND code_hash = $3 AND used_at IS NULL",
                )
                .bind(now_ms())
                .bind(account)
                .bind(sha256_hex(normalise_recovery(code).as_bytes()))
                .execute(&self.db.pool)
                .await
                .map_err(|_| "authn_mfa_fail")?;
                if used.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err("authn_mfa_fail")
                }
            }
            (None, None) => Err("authn_mfa_fail"),
        }
    }

    /// Refuse while a second-factor lockout runs.
    fn check_mfa_lock(&self, locked_until: Option<i64>) -> Result<()> {
        let now = now_ms();
        match locked_until {
            Some(until) if until > now => Err(Error::TooManyAttempts {
                message: "too many wrong sign-in attempts; this account's sign-in is locked for a while".into(),
                retry_after_s: u64::try_from((until - now + 999) / 1000).unwrap_or(1),
            }),
            _ => Ok(()),
        }
    }

    /// Count a wrong attempt at an account with a second factor; from the
    /// `mfa_max_failures`-th in a row on, lock it, each time twice as long
    /// (capped at a day).
    async fn mfa_failed(&self, account: &str) -> Result<()> {
        let failures: i64 = sqlx::query_scalar(
            "UPDATE accounts SET mfa_failures = mfa_failures + 1 WHERE id = $1 RETURNING mfa_failures",
        )
        .bind(account)
        .fetch_one(&self.db.pool)
        .await?;
        let over = failures - self.settings.mfa_max_failures.max(1);
        if over >= 0 {
            let secs = self
                .settings
                .mfa_lockout_seconds
                .max(1)
                .saturating_mul(1i64 << over.min(20))
                .min(86_400);
            sqlx::query("UPDATE accounts SET mfa_locked_until = $1 WHERE id = $2")
                .bind(now_ms() + secs * 1000)
                .bind(account)
                .execute(&self.db.pool)
                .await?;
        }
        Ok(())
    }

    async fn mfa_succeeded(&self, account: &str) -> Result<()> {
        sqlx::query("UPDATE accounts SET mfa_failures = 0, mfa_locked_until = NULL WHERE id = $1")
            .bind(account)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }

    /// Open a session for an account already authenticated (password, SSO).
    pub async fn open_session(&self, meta: &RequestMeta, account: Account, action: &str) -> Result<NewSession> {
        let token = format!("{SESSION_PREFIX}{}", base62(&random_bytes::<32>(), 43));
        let session_id = new_id("sess");
        let now = now_ms();
        let expires_at = now + self.settings.session_ttl_hours * 3_600_000;
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, account_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session_id)
        .bind(&account.id)
        .bind(sha256_hex(token.as_bytes()))
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            meta,
            &Event {
                actor: Some(&account.id),
                api_key_id: None,
                action,
                target: Some(&session_id),
                outcome: Outcome::Success,
                metadata: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(NewSession {
            token,
            session_id,
            expires_at,
            account,
        })
    }

    async fn audit_failure(&self, meta: &RequestMeta, actor: Option<&str>, action: &str) -> Result<()> {
        let mut conn = self.db.pool.acquire().await?;
        audit::record(
            &mut conn,
            meta,
            &Event {
                actor,
                api_key_id: None,
                action,
                target: None,
                outcome: Outcome::Failure,
                metadata: None,
            },
        )
        .await
    }

    /// Revoke a session (logout).
    pub async fn log_out(&self, meta: &RequestMeta, p: &Principal) -> Result<()> {
        let Credential::Session { session_id } = &p.credential else {
            return Err(Error::invalid(
                "authorization",
                "log out with a session token, not an API key",
            ));
        };
        let mut tx = self.db.pool.begin().await?;
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            meta,
            &Event {
                actor: Some(&p.account_id),
                api_key_id: None,
                action: "session_revoked",
                target: Some(session_id),
                outcome: Outcome::Success,
                metadata: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Resolve a bearer token (session `dps_…` or API key `dpl_…`).
    pub async fn authenticate(&self, token: &str, ip: Option<&str>) -> Result<Principal> {
        let token = token.trim();
        let unauth = || Error::Unauthenticated("invalid, expired or revoked credentials".into());
        if token.starts_with(keys::KEY_PREFIX) {
            return keys::authenticate(&self.db, token, ip).await?.ok_or_else(unauth);
        }
        if !token.starts_with(SESSION_PREFIX) {
            return Err(unauth());
        }
        let row = sqlx::query(
            "SELECT s.id AS session_id, a.id, a.email, a.role FROM sessions s JOIN accounts a ON a.id = s.account_id \
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND a.disabled_at IS NULL",
        )
        .bind(sha256_hex(token.as_bytes()))
        .bind(now_ms())
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(unauth)?;
        Ok(Principal {
            account_id: row.try_get("id")?,
            email: row.try_get("email")?,
            role: Role::parse(&row.try_get::<String, _>("role")?),
            credential: Credential::Session {
                session_id: row.try_get("session_id")?,
            },
        })
    }

    /// One account.
    pub async fn get(&self, id: &str) -> Result<Account> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?
        .ok_or_else(|| Error::NotFound("account".into()))?;
        account_from(&row)
    }

    /// Accounts by id, after `starting_after` (admin listing).
    pub async fn list(&self, starting_after: Option<&str>, limit: i64) -> Result<Vec<Account>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id > $1 ORDER BY id LIMIT $2"
        )))
        .bind(starting_after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(account_from).collect()
    }

    /// Disable or re-enable an account (admin). Disabling revokes its sessions.
    pub async fn set_disabled(
        &self,
        meta: &RequestMeta,
        admin: &Principal,
        id: &str,
        disabled: bool,
    ) -> Result<Account> {
        let mut tx = self.db.pool.begin().await?;
        let now = now_ms();
        let n = sqlx::query("UPDATE accounts SET disabled_at = $1 WHERE id = $2")
            .bind(disabled.then_some(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if n.rows_affected() == 0 {
            return Err(Error::NotFound("account".into()));
        }
        if disabled {
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE account_id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        audit::record(
            &mut tx,
            meta,
            &Event::by(admin, if disabled { "user_disabled" } else { "user_enabled" }, Some(id)),
        )
        .await?;
        tx.commit().await?;
        self.get(id).await
    }

    /// Start TOTP enrolment: a new secret, active only once a code from it is
    /// confirmed with [`Accounts::confirm_totp`]. A session alone is not
    /// enough to change how the account signs in: with a second factor on,
    /// a current code (or a recovery code) from it is needed; otherwise the
    /// password (accounts that sign in only by SSO have none to give).
    pub async fn enrol_totp(&self, p: &Principal, password: Option<&str>, code: Option<&str>) -> Result<TotpEnrolment> {
        let row = sqlx::query(
            "SELECT password_hash, totp_secret, totp_last_step, mfa_locked_until FROM accounts WHERE id = $1",
        )
        .bind(&p.account_id)
        .fetch_one(&self.db.pool)
        .await?;
        let sealed: Option<String> = row.try_get("totp_secret")?;
        if let Some(sealed) = sealed {
            self.check_mfa_lock(row.try_get("mfa_locked_until")?)?;
            let Some(code) = code else {
                return Err(Error::invalid(
                    "code",
                    "a second factor is on: give a current code from it (or a recovery code) to replace it",
                ));
            };
            let (totp, recovery) = if code.trim().len() == 6 {
                (Some(code), None)
            } else {
                (None, Some(code))
            };
            if self
                .second_factor(&p.account_id, &sealed, row.try_get("totp_last_step")?, totp, recovery)
                .await
                .is_err()
            {
                self.mfa_failed(&p.account_id).await?;
                return Err(Error::invalid("code", "wrong or used code"));
            }
            self.mfa_succeeded(&p.account_id).await?;
        } else if let Some(hash) = row.try_get::<Option<String>, _>("password_hash")? {
            let Some(password) = password else {
                return Err(Error::invalid(
                    "password",
                    "give your password to turn on a second factor",
                ));
            };
            if !self.verify_password(password.to_owned(), Some(hash)).await? {
                return Err(Error::invalid("password", "wrong password"));
            }
        }
        let secret = random_bytes::<20>();
        sqlx::query("UPDATE accounts SET totp_pending_secret = $1 WHERE id = $2")
            .bind(self.seal(&p.account_id, &secret))
            .bind(&p.account_id)
            .execute(&self.db.pool)
            .await?;
        let b32 = base32(&secret);
        Ok(TotpEnrolment {
            otpauth_url: format!(
                "otpauth://totp/doppel:{}?secret={b32}&issuer=doppel&algorithm=SHA1&digits=6&period=30",
                p.email.replace('@', "%40")
            ),
            secret: b32,
        })
    }

    /// Confirm enrolment with a current code; returns ten recovery codes, shown once.
    pub async fn confirm_totp(&self, meta: &RequestMeta, p: &Principal, code: &str) -> Result<Vec<String>> {
        let sealed: Option<String> = sqlx::query_scalar("SELECT totp_pending_secret FROM accounts WHERE id = $1")
            .bind(&p.account_id)
            .fetch_one(&self.db.pool)
            .await?;
        let sealed = sealed.ok_or_else(|| Error::Conflict("start TOTP enrolment first".into()))?;
        let secret = self.unseal(&p.account_id, &sealed)?;
        let step =
            totp_match(&secret, code, now_ms() / 1000).ok_or_else(|| Error::invalid("code", "wrong TOTP code"))?;
        let codes: Vec<String> = (0..10)
            .map(|_| {
                let raw = base62(&random_bytes::<8>(), 10).to_ascii_lowercase();
                format!("{}-{}", &raw[..5], &raw[5..])
            })
            .collect();
        let mut tx = self.db.pool.begin().await?;
        sqlx::query(
            "UPDATE accounts SET totp_secret = totp_pending_secret, totp_pending_secret = NULL, totp_last_step = $1 WHERE id = $2",
        )
        .bind(step)
        .bind(&p.account_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1")
            .bind(&p.account_id)
            .execute(&mut *tx)
            .await?;
        for c in &codes {
            sqlx::query("INSERT INTO recovery_codes (account_id, code_hash) VALUES ($1, $2)")
                .bind(&p.account_id)
                .bind(sha256_hex(normalise_recovery(c).as_bytes()))
                .execute(&mut *tx)
                .await?;
        }
        audit::record(&mut tx, meta, &Event::by(p, "authn_mfa_enabled", Some(&p.account_id))).await?;
        tx.commit().await?;
        Ok(codes)
    }

    /// Seal a TOTP secret: a random nonce, the secret XOR an HMAC-derived
    /// keystream bound to the account, and a tag. The database alone does not
    /// reveal it; the signing key is needed.
    fn seal(&self, account: &str, secret: &[u8; 20]) -> String {
        let nonce = random_bytes::<16>();
        let stream = self.keystream(account, &nonce);
        let ct: Vec<u8> = secret.iter().zip(&stream).map(|(a, b)| a ^ b).collect();
        let tag = self.tag(account, &nonce, &ct);
        format!(
            "v1.{}.{}.{}",
            crate::util::hex(&nonce),
            crate::util::hex(&ct),
            crate::util::hex(&tag)
        )
    }

    fn unseal(&self, account: &str, sealed: &str) -> Result<Vec<u8>> {
        let bad = || Error::Internal("a stored TOTP secret does not verify (signing key changed?)".into());
        let parts: Vec<&str> = sealed.split('.').collect();
        let [_v1, nonce, ct, tag] = parts.as_slice() else {
            return Err(bad());
        };
        let (nonce, ct, tag) = (
            crate::util::unhex(nonce).ok_or_else(bad)?,
            crate::util::unhex(ct).ok_or_else(bad)?,
            crate::util::unhex(tag).ok_or_else(bad)?,
        );
        if !ct_eq(&self.tag(account, &nonce, &ct), &tag) {
            return Err(bad());
        }
        let stream = self.keystream(account, &nonce);
        Ok(ct.iter().zip(&stream).map(|(a, b)| a ^ b).collect())
    }

    fn keystream(&self, account: &str, nonce: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"doppel totp key v1\0");
        mac.update(account.as_bytes());
        mac.update(nonce);
        mac.finalize().into_bytes().to_vec()
    }

    fn tag(&self, account: &str, nonce: &[u8], ct: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"doppel totp tag v1\0");
        mac.update(account.as_bytes());
        mac.update(nonce);
        mac.update(ct);
        mac.finalize().into_bytes().to_vec()
    }
}

/// Insert an account and its `user_created` audit event on `conn` (the
/// caller's transaction); returns its id and creation time. A taken e-mail is
/// a [`Error::Conflict`], also when two sign-ups race.
pub(crate) async fn insert_account(
    conn: &mut sqlx::AnyConnection,
    meta: &RequestMeta,
    email: &str,
    password_hash: Option<&str>,
    role: Role,
    details: serde_json::Value,
) -> Result<(String, i64)> {
    let id = new_id("acct");
    let now = now_ms();
    let inserted =
        sqlx::query("INSERT INTO accounts (id, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(email)
            .bind(password_hash)
            .bind(role.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await;
    match inserted {
        Ok(_) => {}
        Err(e) if crate::db::is_unique_violation(&e) => {
            return Err(Error::Conflict("an account with this e-mail already exists".into()));
        }
        Err(e) => return Err(e.into()),
    }
    audit::record(
        conn,
        meta,
        &Event {
            actor: Some(&id),
            api_key_id: None,
            action: "user_created",
            target: Some(&id),
            outcome: Outcome::Success,
            metadata: Some(details),
        },
    )
    .await?;
    Ok((id, now))
}

fn normalise_email(email: &str) -> Result<String> {
    let email = email.trim().to_ascii_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(Error::invalid("email", "not an e-mail address"))
    }
}

fn normalise_recovery(code: &str) -> String {
    code.trim().to_ascii_lowercase().replace(['-', ' '], "")
}

/// RFC 4648 base32 without padding (what authenticator apps read).
pub fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in data {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Bytes of RFC 4648 base32 text (no padding, case-insensitive); `None` if invalid.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase())?;
        buffer = (buffer << 5) | u32::try_from(v).ok()?;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// The RFC 6238 code (HMAC-SHA1, 6 digits) of `secret` at time step `step`.
pub fn totp_at(secret: &[u8], step: i64) -> String {
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let bin = (u32::from(digest[offset]) & 0x7f) << 24
        | u32::from(digest[offset + 1]) << 16
        | u32::from(digest[offset + 2]) << 8
        | u32::from(digest[offset + 3]);
    format!("{:06}", bin % 1_000_000)
}

/// The 30-second step within ±1 whose code is `code`, if any.
fn totp_match(secret: &[u8], code: &str, unix: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix / 30;
    [now - 1, now, now + 1]
        .into_iter()
        .find(|&step| ct_eq(totp_at(secret, step).as_bytes(), code.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc_6238_vectors() {
        // RFC 6238 appendix B, SHA1 secret "12345678901234567890", last 6 digits.
        let secret = b"12345678901234567890";
        assert_eq!(totp_at(secret, 59 / 30), "287082");
        assert_eq!(totp_at(secret, 1_111_111_109 / 30), "081804");
        assert_eq!(totp_at(secret, 2_000_000_000 / 30), "279037");
        assert_eq!(
            totp_match(secret, "081804", 1_111_111_109 + 30),
            Some(1_111_111_109 / 30)
        );
        assert_eq!(totp_match(secret, "081804", 1_111_111_109 + 90), None);
    }

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytboi======").unwrap(), b"foobar");
        assert!(base32_decode("MZ1").is_none());
    }

    proptest::proptest! {
        #[test]
        fn base32_round_trips(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            proptest::prop_assert_eq!(base32_decode(&base32(&bytes)), Some(bytes));
        }

        /// A code is accepted one step either side of its own (clock skew), and
        /// the step it is accepted for is its own (what replay protection stores).
        #[test]
        fn a_code_is_accepted_within_one_step(secret in proptest::collection::vec(proptest::prelude::any::<u8>(), 10..40), t in 1_000_000i64..4_000_000_000) {
            let step = t / 30;
            let code = totp_at(&secret, step);
            for now in [t, t - 30, t + 30] {
                let found = totp_match(&secret, &code, now);
                proptest::prop_assert!(found.is_some());
                proptest::prop_assert_eq!(totp_at(&secret, found.unwrap()), code.clone());
            }
        }
    }

    #[test]
    fn emails_are_checked_and_lower_cased() {
        assert_eq!(normalise_email(" Ada@Example.COM ").unwrap(), "ada@example.com");
        for bad in ["ada", "ada@", "@x.io", "a b@x.io", "ada@localhost"] {
            assert!(normalise_email(bad).is_err(), "{bad}");
        }
    }
}
