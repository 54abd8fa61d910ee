//! Shared by the metadata-store suites of `doppel-platform` and
//! `doppel-market` (`#[path]`-included): a fresh SQLite file per test and,
//! when `DOPPEL_TEST_POSTGRES` names a server (CI sets it to the one on
//! 127.0.0.1:5432), a fresh PostgreSQL database dropped afterwards; and the
//! accounts every test signs up.

#![allow(dead_code, reason = "each suite uses a different part")]

use doppel_platform::Db;
use doppel_platform::accounts::Accounts;
use doppel_platform::audit::RequestMeta;
use doppel_platform::authz::Principal;
use doppel_platform::settings::AuthSettings;

/// A database for one test; PostgreSQL ones are dropped on drop.
pub(crate) struct TestDb {
    pub(crate) db: Db,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg.take() {
            let pool = self.db.pool.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async move {
                    pool.close().await;
                    let admin = Db::connect_raw(&admin_url).await.unwrap();
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await
                    .unwrap();
                });
            })
            .join()
            .unwrap();
        }
    }
}

pub(crate) async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    TestDb {
        db: Db::connect(&url).await.unwrap(),
        _dir: Some(dir),
        pg: None,
    }
}

pub(crate) async fn postgres() -> Option<TestDb> {
    let admin_url = std::env::var("DOPPEL_TEST_POSTGRES").ok()?;
    let name = format!("doppel_test_{}", doppel_platform::util::new_id("db").replace("db_", ""));
    let admin = Db::connect_raw(&admin_url)
        .await
        .expect("DOPPEL_TEST_POSTGRES is reachable");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(b, _)| b);
    let db = Db::connect(&format!("{base}/{name}")).await.unwrap();
    Some(TestDb {
        db,
        _dir: None,
        pg: Some((admin_url, name)),
    })
}

/// Run `body` on SQLite, then on PostgreSQL when configured.
macro_rules! on_both {
    ($name:ident, $body:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let t = support::sqlite().await;
            ($body)(t.db.clone()).await;
            drop(t);
            match support::postgres().await {
                Some(t) => {
                    ($body)(t.db.clone()).await;
                    drop(t);
                }
                None => eprintln!(
                    "{}: PostgreSQL leg skipped (set DOPPEL_TEST_POSTGRES)",
                    stringify!($name)
                ),
            }
        }
    };
}

pub(crate) fn auth_settings() -> AuthSettings {
    AuthSettings {
        insecure_fast_hashing: true,
        admin_emails: vec!["root@example.com".into()],
        ..AuthSettings::default()
    }
}

pub(crate) fn accounts(db: &Db) -> Accounts {
    Accounts::new(db.clone(), auth_settings(), vec![9; 32])
}

pub(crate) fn meta() -> RequestMeta {
    RequestMeta {
        request_id: "req_test".into(),
        ip: Some("127.0.0.1".into()),
    }
}

pub(crate) async fn user(a: &Accounts, email: &str) -> Principal {
    a.sign_up(&meta(), email, "correct horse battery").await.unwrap();
    let s = a
        .log_in(&meta(), email, "correct horse battery", None, None)
        .await
        .unwrap();
    a.authenticate(&s.token, None).await.unwrap()
}
