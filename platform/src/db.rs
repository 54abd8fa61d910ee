//! The metadata store: one [`Db`] over SQLite (the embedded default, a file
//! under the data dir) or PostgreSQL, through sqlx's `Any` driver so every
//! query is written once. Queries use `$1`-style parameters, which both
//! backends accept; timestamps are integer milliseconds and flags integers,
//! the types both backends store identically.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::{Error, Result};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (single writer).
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A connection pool plus the backend it talks to.
#[derive(Debug, Clone)]
pub struct Db {
    /// The pool.
    pub pool: AnyPool,
    /// Its backend.
    pub backend: Backend,
}

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// Embedded so one binary carries both backends' schemas.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sqlite: include_str!("../migrations/sqlite/0001_init.sql"),
        postgres: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "oidc",
        sqlite: include_str!("../migrations/sqlite/0002_oidc.sql"),
        postgres: include_str!("../migrations/postgres/0002_oidc.sql"),
    },
    Migration {
        version: 3,
        name: "privacy",
        sqlite: include_str!("../migrations/sqlite/0003_privacy.sql"),
        postgres: include_str!("../migrations/postgres/0003_privacy.sql"),
    },
    Migration {
        version: 4,
        name: "marketplace",
        sqlite: include_str!("../migrations/sqlite/0004_marketplace.sql"),
        postgres: include_str!("../migrations/postgres/0004_marketplace.sql"),
    },
    Migration {
        version: 5,
        name: "payouts",
        sqlite: include_str!("../migrations/sqlite/0005_payouts.sql"),
        postgres: include_str!("../migrations/postgres/0005_payouts.sql"),
    },
    Migration {
        version: 6,
        name: "hardening",
        sqlite: include_str!("../migrations/sqlite/0006_hardening.sql"),
        postgres: include_str!("../migrations/postgres/0006_hardening.sql"),
    },
    Migration {
        version: 7,
        name: "console",
        sqlite: include_str!("../migrations/sqlite/0007_console.sql"),
        postgres: include_str!("../migrations/postgres/0007_console.sql"),
    },
];

impl Db {
    /// Connect to `url` (`sqlite://path?mode=rwc` or `postgres://…`) and
    /// bring the schema up to date.
    pub async fn connect(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(Error::Settings(
                "database_url: expected sqlite://… or postgres://…".to_owned(),
            ));
        };
        if backend == Backend::Sqlite {
            ensure_sqlite_dir(url)?;
        }
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            // SQLite has one writer: a small pool avoids lock contention; WAL
            // (set below) lets readers run beside it.
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let db = Db { pool, backend };
        db.migrate().await?;
        Ok(db)
    }

    /// Apply the migrations not yet applied, each in its own transaction.
    /// Concurrent starters (several workers) are serialised by the unique
    /// version key: a loser's transaction fails and it re-reads the version.
    async fn migrate(&self) -> Result<()> {
        self.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS doppel_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .await?;
        for m in MIGRATIONS {
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM doppel_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&self.pool)
                .await?;
            if done.is_some() {
                continue;
            }
            let sql = match self.backend {
                Backend::Sqlite => m.sqlite,
                Backend::Postgres => m.postgres,
            };
            let mut tx = self.pool.begin().await?;
            let fail = |source| Error::Migration {
                version: m.version,
                name: m.name,
                source,
            };
            if self.backend == Backend::Postgres {
                // Serialise concurrent migrators on PostgreSQL.
                sqlx::query("SELECT pg_advisory_xact_lock(7363725)")
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                let done: Option<i64> = sqlx::query_scalar("SELECT version FROM doppel_migrations WHERE version = $1")
                    .bind(m.version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(fail)?;
                if done.is_some() {
                    continue;
                }
            }
            for statement in statements(sql) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            sqlx::query("INSERT INTO doppel_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(m.version)
                .bind(m.name)
                .bind(crate::util::now_ms())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            tracing::info!(version = m.version, name = m.name, "Applied migration.");
        }
        Ok(())
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Split a migration file into statements (our files keep `;` out of literals).
fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// SQLite creates the file (`mode=rwc`) but not its directory.
fn ensure_sqlite_dir(url: &str) -> Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Whether an error is a unique-constraint violation (duplicate e-mail, …).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation()
                || d.code().as_deref() == Some("23505")
                || d.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

impl Db {
    /// A bare pool on `url` without migrations (administrative connections,
    /// e.g. creating a database for a test run).
    pub async fn connect_raw(url: &str) -> Result<AnyPool> {
        sqlx::any::install_default_drivers();
        Ok(AnyPoolOptions::new().max_connections(1).connect(url).await?)
    }
}
