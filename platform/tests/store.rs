//! The platform against real metadata stores: every test runs on a fresh
//! SQLite file and, when `DOPPEL_TEST_POSTGRES` names a server (CI sets it to
//! the one on 127.0.0.1:5432), on a fresh PostgreSQL database created for the
//! test and dropped afterwards.

#![allow(clippy::print_stderr, reason = "a test says which backend legs it skipped")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use doppel_platform::accounts::{Accounts, totp_at};
use doppel_platform::audit::RequestMeta;
use doppel_platform::authz::{Credential, Principal, Scope};
use doppel_platform::jobs::{JobFailure, JobState, Manifest, Queue};
use doppel_platform::settings::{AuthSettings, JobSettings, PrivacySettings};
use doppel_platform::{Db, Error, datasets, idempotency, keys, privacy};

/// A database for one test; PostgreSQL ones are dropped on drop.
struct TestDb {
    db: Db,
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

async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    TestDb {
        db: Db::connect(&url).await.unwrap(),
        _dir: Some(dir),
        pg: None,
    }
}

async fn postgres() -> Option<TestDb> {
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
            let t = sqlite().await;
            ($body)(t.db.clone()).await;
            drop(t);
            match postgres().await {
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

fn auth_settings() -> AuthSettings {
    AuthSettings {
        insecure_fast_hashing: true,
        admin_emails: vec!["root@example.com".into()],
        ..AuthSettings::default()
    }
}

fn accounts(db: &Db) -> Accounts {
    Accounts::new(db.clone(), auth_settings(), vec![9; 32])
}

fn meta() -> RequestMeta {
    RequestMeta {
        request_id: "req_test".into(),
        ip: Some("127.0.0.1".into()),
    }
}

async fn user(a: &Accounts, email: &str) -> Principal {
    a.sign_up(&meta(), email, "correct horse battery").await.unwrap();
    let s = a
        .log_in(&meta(), email, "correct horse battery", None, None)
        .await
        .unwrap();
    a.authenticate(&s.token, None).await.unwrap()
}

async fn audit_actions(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_events ORDER BY seq")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

on_both!(sign_up_log_in_and_sessions, |db: Db| async move {
    let a = accounts(&db);
    let acct = a
        .sign_up(&meta(), " Ada@Example.com ", "correct horse battery")
        .await
        .unwrap();
    assert_eq!(acct.email, "ada@example.com");
    assert!(matches!(
        a.sign_up(&meta(), "ADA@example.com", "another long password").await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        a.sign_up(&meta(), "bob@example.com", "short").await,
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        a.log_in(&meta(), "ada@example.com", "wrong password!", None, None)
            .await,
        Err(Error::Unauthenticated(_))
    ));
    assert!(matches!(
        a.log_in(&meta(), "nobody@example.com", "correct horse battery", None, None)
            .await,
        Err(Error::Unauthenticated(_))
    ));
    let s = a
        .log_in(&meta(), "ada@example.com", "correct horse battery", None, None)
        .await
        .unwrap();
    assert!(s.token.starts_with("dps_"));
    let p = a.authenticate(&s.token, None).await.unwrap();
    assert_eq!(p.account_id, acct.id);
    assert!(matches!(p.credential, Credential::Session { .. }));
    // The token is stored hashed: the raw token appears nowhere in the store.
    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM sessions")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(stored.iter().all(|h| h != &s.token && h.len() == 64));
    a.log_out(&meta(), &p).await.unwrap();
    assert!(a.authenticate(&s.token, None).await.is_err(), "logout revokes");
    let actions = audit_actions(&db).await;
    for want in [
        "user_created",
        "authn_login_fail",
        "authn_login_success",
        "session_revoked",
    ] {
        assert!(actions.iter().any(|x| x == want), "{want} in {actions:?}");
    }
    let root = a
        .sign_up(&meta(), "root@example.com", "correct horse battery")
        .await
        .unwrap();
    assert_eq!(root.role.as_str(), "admin");
});

on_both!(
    totp_second_factor_with_replay_protection_and_recovery,
    |db: Db| async move {
        let a = accounts(&db);
        let p = user(&a, "eve@example.com").await;
        // Turning a second factor on takes the password, not just a session.
        assert!(matches!(a.enrol_totp(&p, None, None).await, Err(Error::Invalid { .. })));
        assert!(matches!(
            a.enrol_totp(&p, Some("wrong password!"), None).await,
            Err(Error::Invalid { .. })
        ));
        let e = a.enrol_totp(&p, Some("correct horse battery"), None).await.unwrap();
        let secret = base32_decode(&e.secret);
        assert!(
            e.otpauth_url
                .starts_with("otpauth://totp/doppel:eve%40example.com?secret=")
        );
        let step = doppel_platform::util::now_ms() / 1000 / 30;
        assert!(a.confirm_totp(&meta(), &p, "000000").await.is_err() || totp_at(&secret, step) == "000000");
        let codes = a.confirm_totp(&meta(), &p, &totp_at(&secret, step)).await.unwrap();
        assert_eq!(codes.len(), 10);
        // The secret is not stored in the clear.
        let stored: Option<String> = sqlx::query_scalar("SELECT totp_secret FROM accounts WHERE id = $1")
            .bind(&p.account_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!(!stored.unwrap().contains(&e.secret));
        assert!(matches!(
            a.log_in(&meta(), "eve@example.com", "correct horse battery", None, None)
                .await,
            Err(Error::MfaRequired)
        ));
        // Without a code the answer is the same whatever the password: it
        // cannot be tested apart from the second factor.
        assert!(matches!(
            a.log_in(&meta(), "eve@example.com", "a wrong guess", None, None).await,
            Err(Error::MfaRequired)
        ));
        // With a code, a wrong password and a wrong code read the same.
        let wrong_password = a
            .log_in(
                &meta(),
                "eve@example.com",
                "a wrong guess",
                Some(&totp_at(&secret, step + 1)),
                None,
            )
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(wrong_password, "wrong e-mail, password or code");
        sqlx::query("UPDATE accounts SET mfa_failures = 0 WHERE email = 'eve@example.com'")
            .execute(&db.pool)
            .await
            .unwrap();
        // The code used to confirm cannot be used again (replay); the next one can.
        assert!(
            a.log_in(
                &meta(),
                "eve@example.com",
                "correct horse battery",
                Some(&totp_at(&secret, step)),
                None
            )
            .await
            .is_err()
        );
        a.log_in(
            &meta(),
            "eve@example.com",
            "correct horse battery",
            Some(&totp_at(&secret, step + 1)),
            None,
        )
        .await
        .unwrap();
        assert!(
            a.log_in(
                &meta(),
                "eve@example.com",
                "correct horse battery",
                Some(&totp_at(&secret, step + 1)),
                None
            )
            .await
            .is_err()
        );
        // Replacing the second factor takes a current code from it.
        assert!(matches!(
            a.enrol_totp(&p, Some("correct horse battery"), None).await,
            Err(Error::Invalid { .. })
        ));
        // A recovery code works once.
        let code = codes[0].to_uppercase();
        a.log_in(&meta(), "eve@example.com", "correct horse battery", None, Some(&code))
            .await
            .unwrap();
        assert!(
            a.log_in(&meta(), "eve@example.com", "correct horse battery", None, Some(&code))
                .await
                .is_err()
        );
    }
);

on_both!(wrong_second_factor_codes_lock_sign_in_out, |db: Db| async move {
    let a = accounts(&db);
    let p = user(&a, "lou@example.com").await;
    let e = a.enrol_totp(&p, Some("correct horse battery"), None).await.unwrap();
    let secret = base32_decode(&e.secret);
    let step = doppel_platform::util::now_ms() / 1000 / 30;
    let recovery = a.confirm_totp(&meta(), &p, &totp_at(&secret, step)).await.unwrap();
    let wrong = if totp_at(&secret, step + 1) == "123456" {
        "654321"
    } else {
        "123456"
    };
    // Five wrong codes are answered as wrong; then sign-in is locked, and
    // even the right code is refused (429) until the lockout ends.
    for _ in 0..5 {
        let e = a
            .log_in(&meta(), "lou@example.com", "correct horse battery", Some(wrong), None)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Unauthenticated(_)), "{e}");
    }
    let locked = a
        .log_in(
            &meta(),
            "lou@example.com",
            "correct horse battery",
            Some(&totp_at(&secret, step + 1)),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(locked, Error::TooManyAttempts { retry_after_s, .. } if retry_after_s >= 1),
        "{locked}"
    );
    // Replacing the second factor is locked as well.
    assert!(matches!(
        a.enrol_totp(&p, None, Some(&totp_at(&secret, step + 1))).await,
        Err(Error::TooManyAttempts { .. })
    ));
    // When the lockout has run out, the right code works and the count resets.
    sqlx::query("UPDATE accounts SET mfa_locked_until = 1 WHERE id = $1")
        .bind(&p.account_id)
        .execute(&db.pool)
        .await
        .unwrap();
    a.log_in(
        &meta(),
        "lou@example.com",
        "correct horse battery",
        Some(&totp_at(&secret, step + 1)),
        None,
    )
    .await
    .unwrap();
    let failures: i64 = sqlx::query_scalar("SELECT mfa_failures FROM accounts WHERE id = $1")
        .bind(&p.account_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(failures, 0);
    // With the second factor on, replacing it takes a code from it: a
    // used one is refused, a recovery code works.
    assert!(a.enrol_totp(&p, None, Some(&totp_at(&secret, step + 1))).await.is_err());
    a.enrol_totp(&p, None, Some(&recovery[0])).await.unwrap();
});

on_both!(api_keys_scopes_expiry_and_revocation, |db: Db| async move {
    let a = accounts(&db);
    let p = user(&a, "kim@example.com").await;
    let k = keys::create(
        &db,
        &meta(),
        &p,
        "ci",
        &["datasets:read".into(), "jobs:run".into()],
        Some(9999),
        30,
    )
    .await
    .unwrap();
    assert!(keys::looks_valid(&k.secret));
    assert_eq!(k.key.scopes, vec!["datasets:read", "jobs:run"]);
    let cap = k.key.created_at + 30 * 86_400_000;
    assert_eq!(k.key.expires_at, Some(cap), "expiry capped at the server maximum");
    let kp = a.authenticate(&k.secret, Some("10.0.0.1")).await.unwrap();
    assert!(kp.has_scope(Scope::JobsRun) && !kp.has_scope(Scope::DatasetsWrite));
    let listed = keys::list(&db, &p.account_id).await.unwrap();
    assert_eq!(listed[0].last_used_ip.as_deref(), Some("10.0.0.1"));
    let stored: Vec<String> = sqlx::query_scalar("SELECT secret_hash FROM api_keys")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(!stored.contains(&k.secret));
    // A key cannot grant what its creator lacks, nor admin to a user.
    assert!(matches!(
        keys::create(&db, &meta(), &kp, "wider", &["datasets:write".into()], None, 30).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        keys::create(&db, &meta(), &p, "root", &["admin".into()], None, 30).await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        keys::create(&db, &meta(), &p, "typo", &["datasets:raed".into()], None, 30).await,
        Err(Error::Invalid { .. })
    ));
    // Someone else cannot revoke it; its owner can, and then it stops working.
    let other = user(&a, "lou@example.com").await;
    assert!(matches!(
        keys::revoke(&db, &meta(), &other, &k.key.id).await,
        Err(Error::NotFound(_))
    ));
    keys::revoke(&db, &meta(), &p, &k.key.id).await.unwrap();
    assert!(a.authenticate(&k.secret, None).await.is_err());
    // Expired keys stop working too.
    let old = keys::create(&db, &meta(), &p, "old", &["datasets:read".into()], Some(1), 30)
        .await
        .unwrap();
    sqlx::query("UPDATE api_keys SET expires_at = 1 WHERE id = $1")
        .bind(&old.key.id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(a.authenticate(&old.secret, None).await.is_err());
    // A disabled account's keys and sessions stop working.
    let root = user(&a, "root@example.com").await;
    let live = keys::create(&db, &meta(), &p, "live", &["datasets:read".into()], None, 30)
        .await
        .unwrap();
    a.set_disabled(&meta(), &root, &p.account_id, true).await.unwrap();
    assert!(a.authenticate(&live.secret, None).await.is_err());
});

async fn submit(q: &Queue, p: &Principal) -> String {
    q.submit(&meta(), p, "test", &serde_json::json!({"n": 1}))
        .await
        .unwrap()
        .id
}

fn queue(db: &Db, lease_seconds: i64, max_attempts: i64) -> Queue {
    Queue::new(
        db.clone(),
        &JobSettings {
            lease_seconds,
            max_attempts,
            retry_base_seconds: 0,
            ..JobSettings::default()
        },
    )
}

on_both!(heartbeats_with_and_without_progress_share_a_statement, |db: Db| async move {
    // A worker's first heartbeat carries no progress, later ones do. On
    // PostgreSQL the statement prepared by the first declared a float4
    // parameter (sqlx's Any driver maps a NULL f64 so), and every later
    // progress was refused as "incorrect binary data format": jobs showed no
    // progress and their leases ran out.
    let a = accounts(&db);
    let p = user(&a, "beat@example.com").await;
    let q = queue(&db, 30, 1);
    let id = submit(&q, &p).await;
    let lease = q.claim("w").await.unwrap().unwrap();
    // Five without progress first, so that every pooled connection the
    // calls rotate through prepares the statement that way, then five with.
    for i in 0..10 {
        let progress = (i >= 5).then(|| (0.1 * f64::from(i), "step"));
        assert!(!q.heartbeat(&lease, progress).await.unwrap(), "heartbeat {i}");
    }
    let job = q.get(&id).await.unwrap();
    assert!((job.progress - 0.9).abs() < 1e-9, "{}", job.progress);
    assert_eq!(job.message.as_deref(), Some("step"));
});

on_both!(jobs_lease_fencing_retry_and_cancel, |db: Db| async move {
    let a = accounts(&db);
    let p = user(&a, "jo@example.com").await;
    let q = queue(&db, 1, 2);
    let id = submit(&q, &p).await;
    let lease = q.claim("w1").await.unwrap().expect("a queued job is claimable");
    assert_eq!(
        (lease.job.id.as_str(), lease.job.attempt, lease.job.state),
        (id.as_str(), 1, JobState::Running)
    );
    assert!(
        q.claim("w2").await.unwrap().is_none(),
        "a leased job is not claimed twice"
    );
    assert!(!q.heartbeat(&lease, Some((0.5, "half"))).await.unwrap());
    assert_eq!(q.get(&id).await.unwrap().message.as_deref(), Some("half"));
    // The lease expires (worker stalled): another worker takes the job over and
    // the first one can no longer write anything.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = q.claim("w2").await.unwrap().expect("an expired lease is claimable");
    assert_eq!(second.job.attempt, 2);
    assert!(matches!(q.heartbeat(&lease, None).await, Err(Error::Conflict(_))));
    assert!(q.finish_succeeded(&lease, &Manifest::default()).await.is_err());
    let manifest = Manifest {
        files: Vec::new(),
        summary: serde_json::json!({"ok": true}),
    };
    q.finish_succeeded(&second, &manifest).await.unwrap();
    let done = q.get(&id).await.unwrap();
    assert_eq!((done.state, done.attempt), (JobState::Succeeded, 2));
    assert_eq!(done.manifest, Some(manifest));

    // A retryable failure goes back to the queue; the last attempt fails for good.
    let id = submit(&q, &p).await;
    let l1 = q.claim("w").await.unwrap().unwrap();
    let flaky = JobFailure {
        code: "storage_unavailable".into(),
        message: "try later".into(),
        retryable: true,
    };
    q.finish_failed(&l1, &flaky).await.unwrap();
    assert_eq!(q.get(&id).await.unwrap().state, JobState::Queued);
    let l2 = q.claim("w").await.unwrap().unwrap();
    q.finish_failed(&l2, &flaky).await.unwrap();
    let failed = q.get(&id).await.unwrap();
    assert_eq!(
        (failed.state, failed.error_code.as_deref()),
        (JobState::Failed, Some("storage_unavailable"))
    );

    // Cancel: a queued job at once; a running one at its next heartbeat.
    let id = submit(&q, &p).await;
    assert_eq!(q.cancel(&meta(), &p, &id).await.unwrap().state, JobState::Cancelled);
    assert!(q.claim("w").await.unwrap().is_none());
    let id = submit(&q, &p).await;
    let l = q.claim("w").await.unwrap().unwrap();
    q.cancel(&meta(), &p, &id).await.unwrap();
    assert!(
        q.heartbeat(&l, None).await.unwrap(),
        "the worker hears about the cancel"
    );
    q.finish_cancelled(&l).await.unwrap();
    assert_eq!(q.get(&id).await.unwrap().state, JobState::Cancelled);

    // A job whose workers keep dying is failed once its attempts are used up.
    let id = submit(&q, &p).await;
    for _ in 0..2 {
        q.claim("w").await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(q.claim("w").await.unwrap().is_none());
    let gone = q.get(&id).await.unwrap();
    assert_eq!(
        (gone.state, gone.error_code.as_deref()),
        (JobState::Failed, Some("attempts_exhausted"))
    );
    let listed = q.list(Some(&p.account_id), None, 100).await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.windows(2).all(|w| w[0].id > w[1].id), "newest first");

    // Attempts left or not, a job whose worker vanishes mid-run twice (it
    // exhausts memory, say) is failed, not handed to a third worker.
    let many = queue(&db, 1, 10);
    let id = submit(&many, &p).await;
    for _ in 0..2 {
        many.claim("w").await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(many.claim("w").await.unwrap().is_none());
    let lost = many.get(&id).await.unwrap();
    assert_eq!(
        (lost.state, lost.error_code.as_deref(), lost.lease_losses),
        (JobState::Failed, Some("worker_lost"), 2)
    );
});

on_both!(concurrent_claims_take_distinct_jobs, |db: Db| async move {
    let a = accounts(&db);
    let p = user(&a, "cc@example.com").await;
    let q = queue(&db, 30, 3);
    for _ in 0..12 {
        submit(&q, &p).await;
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(l) = q.claim(&format!("w{w}")).await.unwrap() {
                got.push(l.job.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (12, 12), "every job claimed exactly once");
});

struct Echo;

impl doppel_platform::jobs::JobHandler for Echo {
    fn run(&self, ctx: doppel_platform::jobs::JobContext) -> doppel_platform::jobs::HandlerFuture {
        Box::pin(async move {
            ctx.progress(0.5, "working");
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Manifest {
                files: Vec::new(),
                summary: ctx.lease.job.spec.clone(),
            })
        })
    }
}

/// The job once it reaches a final state (or as it is after 5 s).
async fn wait_until_final(q: &Queue, id: &str) -> doppel_platform::jobs::Job {
    let mut job = q.get(id).await.unwrap();
    for _ in 0..200 {
        if job.state.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        job = q.get(id).await.unwrap();
    }
    job
}

struct Crash;

impl doppel_platform::jobs::JobHandler for Crash {
    fn run(&self, ctx: doppel_platform::jobs::JobContext) -> doppel_platform::jobs::HandlerFuture {
        Box::pin(async move {
            assert!(ctx.lease.job.attempt > 1, "a runner bug on the first attempt");
            Ok(Manifest::default())
        })
    }
}

on_both!(
    a_panicking_runner_fails_the_attempt_not_the_worker,
    |db: Db| async move {
        let a = accounts(&db);
        let p = user(&a, "panic@example.com").await;
        let q = queue(&db, 5, 3);
        let id = submit(&q, &p).await;
        let stop = Arc::new(AtomicBool::new(false));
        let w = doppel_platform::jobs::Worker::new(q.clone(), Arc::new(Crash), "w", Duration::from_millis(20));
        let h = tokio::spawn(w.run(Arc::clone(&stop)));
        let job = wait_until_final(&q, &id).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        h.await.expect("the worker loop survived the panic");
        assert_eq!(
            (job.state, job.attempt),
            (JobState::Succeeded, 2),
            "retried after the crash"
        );
    }
);

on_both!(worker_loop_runs_jobs_to_completion, |db: Db| async move {
    let a = accounts(&db);
    let p = user(&a, "wl@example.com").await;
    let q = queue(&db, 5, 3);
    let id = submit(&q, &p).await;
    let stop = Arc::new(AtomicBool::new(false));
    let w = doppel_platform::jobs::Worker::new(q.clone(), Arc::new(Echo), "w", Duration::from_millis(20));
    let h = tokio::spawn(w.run(Arc::clone(&stop)));
    let job = wait_until_final(&q, &id).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    h.await.unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.manifest.unwrap().summary, serde_json::json!({"n": 1}));
});

on_both!(datasets_idempotency_and_audit, |db: Db| async move {
    let a = accounts(&db);
    let p = user(&a, "dd@example.com").await;
    let metadata = serde_json::json!({"rows": 3});
    let d = datasets::create(
        &db,
        &meta(),
        &p,
        &datasets::NewDataset {
            id: "ds_1",
            name: "t",
            media_type: "application/vnd.apache.parquet",
            size_bytes: 10,
            object_key: "datasets/x/ds_1/data.parquet",
            metadata: &metadata,
        },
    )
    .await
    .unwrap();
    assert_eq!(d.metadata, metadata);
    assert_eq!(datasets::list(&db, &p.account_id, None, 10).await.unwrap().len(), 1);
    datasets::delete(&db, &meta(), &p, "ds_1").await.unwrap();
    assert!(matches!(datasets::get(&db, "ds_1").await, Err(Error::NotFound(_))));
    assert!(matches!(
        datasets::delete(&db, &meta(), &p, "ds_1").await,
        Err(Error::NotFound(_))
    ));

    assert!(
        idempotency::lookup(&db, &p.account_id, "k1", "h1")
            .await
            .unwrap()
            .is_none()
    );
    idempotency::store(&db, &p.account_id, "k1", "h1", 201, "{\"id\":1}")
        .await
        .unwrap();
    idempotency::store(&db, &p.account_id, "k1", "h1", 201, "{\"id\":2}")
        .await
        .unwrap();
    assert_eq!(
        idempotency::lookup(&db, &p.account_id, "k1", "h1")
            .await
            .unwrap()
            .unwrap()
            .body,
        "{\"id\":1}"
    );
    assert!(matches!(
        idempotency::lookup(&db, &p.account_id, "k1", "h2").await,
        Err(Error::Conflict(_))
    ));
    assert!(
        idempotency::lookup(&db, "someone else", "k1", "h2")
            .await
            .unwrap()
            .is_none(),
        "keys are per account"
    );
    // Ten concurrent requests with one key: exactly one gets to do the work,
    // the rest are told it is in progress; afterwards everyone replays it.
    let begins = futures::future::join_all((0..10).map(|_| idempotency::begin(&db, &p.account_id, "k2", "h"))).await;
    let reserved = begins
        .iter()
        .filter(|b| matches!(b, Ok(idempotency::Begin::Reserved)))
        .count();
    let busy = begins.iter().filter(|b| matches!(b, Err(Error::Conflict(_)))).count();
    assert_eq!((reserved, busy), (1, 9), "{begins:?}");
    // A failed attempt releases the key; the retry reserves it again.
    idempotency::release(&db, &p.account_id, "k2").await.unwrap();
    assert!(matches!(
        idempotency::begin(&db, &p.account_id, "k2", "h").await,
        Ok(idempotency::Begin::Reserved)
    ));
    idempotency::store(&db, &p.account_id, "k2", "h", 201, "{\"id\":3}")
        .await
        .unwrap();
    assert!(matches!(
        idempotency::begin(&db, &p.account_id, "k2", "h").await,
        Ok(idempotency::Begin::Replay(stored)) if stored.body == "{\"id\":3}"
    ));
    assert!(matches!(
        idempotency::begin(&db, &p.account_id, "k2", "other").await,
        Err(Error::Conflict(_))
    ));
    let actions = audit_actions(&db).await;
    assert!(actions.contains(&"dataset_created".to_owned()) && actions.contains(&"dataset_deleted".to_owned()));
    // The audit log never holds a secret.
    let blobs: Vec<Option<String>> = sqlx::query_scalar("SELECT metadata FROM audit_events")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(blobs.iter().flatten().all(|m| !m.contains("correct horse")));
});

fn base32_decode(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u32, 0, Vec::new());
    for c in s.bytes() {
        let v = alphabet.iter().position(|&a| a == c).unwrap() as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

async fn dataset(db: &Db, p: &Principal, id: &str, name: &str) -> datasets::Dataset {
    let metadata = serde_json::json!({});
    datasets::create(
        db,
        &meta(),
        p,
        &datasets::NewDataset {
            id,
            name,
            media_type: "application/vnd.apache.parquet",
            size_bytes: 1,
            object_key: "k",
            metadata: &metadata,
        },
    )
    .await
    .unwrap()
}

fn spend(epsilon: f64, delta: f64) -> privacy::Spend<'static> {
    privacy::Spend {
        stage: "synth",
        mechanism: "privsyn",
        epsilon,
        delta,
    }
}

const DEFAULTS: PrivacySettings = PrivacySettings {
    dataset_epsilon: 3.0,
    dataset_delta: 1e-6,
};

on_both!(
    privacy_budget_refuses_an_overspend_and_shares_versions,
    |db: Db| async move {
        let a = accounts(&db);
        let p = user(&a, "dp@example.com").await;
        let v1 = dataset(&db, &p, "ds_v1", "patients").await;
        let v2 = dataset(&db, &p, "ds_v2", "patients").await;
        let other = dataset(&db, &p, "ds_o", "claims").await;

        let ids = privacy::charge(&db, &meta(), &p, DEFAULTS, &v1, &[spend(1.0, 1e-9), spend(0.5, 1e-9)])
            .await
            .unwrap();
        assert_eq!(ids.len(), 2);
        privacy::attach_job(&db, &ids, "job_1").await.unwrap();
        // A new version of the same name draws on the same budget.
        privacy::charge(&db, &meta(), &p, DEFAULTS, &v2, &[spend(1.5, 1e-9)])
            .await
            .unwrap();
        let err = privacy::charge(&db, &meta(), &p, DEFAULTS, &v2, &[spend(0.1, 1e-9)])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BudgetExceeded(_)), "{err:?}");
        assert_eq!(err.code(), "privacy_budget_exceeded");
        let message = err.to_string();
        assert!(
            message.contains("`patients`") && message.contains("only ε = 0"),
            "{message}"
        );
        // Refused means nothing was recorded.
        let l = privacy::ledger(&db, DEFAULTS, &p.account_id, "patients").await.unwrap();
        assert_eq!(l.charges.len(), 3);
        assert!((l.spent.epsilon - 3.0).abs() < 1e-12 && l.remaining.epsilon == 0.0);
        assert_eq!(l.charges[0].job_id.as_deref(), Some("job_1"));
        assert_eq!(l.charges[2].dataset_id, "ds_v2");
        // Another dataset has its own budget; δ is enforced too.
        let err = privacy::charge(&db, &meta(), &p, DEFAULTS, &other, &[spend(0.1, 2e-6)])
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BudgetExceeded(_)));
        privacy::charge(&db, &meta(), &p, DEFAULTS, &other, &[spend(3.0, 1e-6)])
            .await
            .unwrap();

        // The owner raises the budget; further jobs fit again.
        let l = privacy::set_budget(
            &db,
            &meta(),
            &p,
            DEFAULTS,
            &p.account_id,
            "patients",
            privacy::Amount {
                epsilon: 4.0,
                delta: 1e-6,
            },
        )
        .await
        .unwrap();
        assert!((l.remaining.epsilon - 1.0).abs() < 1e-12);
        let ids = privacy::charge(&db, &meta(), &p, DEFAULTS, &v1, &[spend(1.0, 1e-9)])
            .await
            .unwrap();
        // A charge whose job never got queued can be undone; one with a job can't.
        privacy::cancel_unqueued(&db, &ids).await.unwrap();
        let l = privacy::ledger(&db, DEFAULTS, &p.account_id, "patients").await.unwrap();
        assert_eq!(l.charges.len(), 3);
        privacy::cancel_unqueued(&db, &[l.charges[0].id.clone()]).await.unwrap();
        assert_eq!(
            privacy::ledger(&db, DEFAULTS, &p.account_id, "patients")
                .await
                .unwrap()
                .charges
                .len(),
            3
        );
        let bad = privacy::set_budget(
            &db,
            &meta(),
            &p,
            DEFAULTS,
            &p.account_id,
            "patients",
            privacy::Amount {
                epsilon: -1.0,
                delta: 0.0,
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(bad, Error::Invalid { ref field, .. } if field == "epsilon"));
        let actions = audit_actions(&db).await;
        assert!(actions.iter().any(|a| a == "privacy_budget_charged"));
        assert!(actions.iter().any(|a| a == "privacy_budget_set"));
    }
);

on_both!(concurrent_charges_never_exceed_the_budget, |db: Db| async move {
    let a = accounts(&db);
    let p = user(&a, "race@example.com").await;
    let d = dataset(&db, &p, "ds_r", "race").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (db, p, d) = (db.clone(), p.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            privacy::charge(&db, &meta(), &p, DEFAULTS, &d, &[spend(1.0, 1e-9)]).await
        }));
    }
    let (mut granted, mut busy) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => granted += 1,
            Err(Error::BudgetExceeded(_)) => {}
            // SQLite may answer "database is locked" to a writer that waited
            // too long; that is a refusal too, never an overspend.
            Err(Error::Db(_)) => busy += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    if busy == 0 {
        assert_eq!(granted, 3, "a budget of 3 fits exactly three charges of 1");
    }
    let l = privacy::ledger(&db, DEFAULTS, &p.account_id, "race").await.unwrap();
    assert!(l.spent.epsilon <= 3.0 + 1e-9, "spent {}", l.spent.epsilon);
    assert_eq!(l.charges.len(), granted);
    assert!(granted >= 1);
});

// ---------------------------------------------------------------- marketplace

use doppel_platform::marketplace::{
    ListingPatch, ListingStatus, Market, NewListing, PurchaseStatus, SearchQuery, Sort, WebhookOutcome,
};
use doppel_platform::payments::fake::FakeProvider;
use doppel_platform::payments::stripe_signature;
use doppel_platform::settings::PaymentSettings;

const WHSEC: &str = "whsec_test";

fn market(db: &Db) -> (Market, FakeProvider) {
    // Nothing listens on the discard port: the fake's own deliveries fail,
    // and the tests deliver (and forge) webhooks themselves.
    let fake = FakeProvider::new(db.clone(), WHSEC.into(), "http://127.0.0.1:9".into(), 300, true);
    let settings = PaymentSettings {
        reconcile_after_seconds: 0,
        ..PaymentSettings::default()
    };
    (Market::new(db.clone(), Arc::new(fake.clone()), settings), fake)
}

fn listing(title: &str, tags: &[&str], category: &str, price: i64, quality: f64, privacy: f64) -> NewListing {
    NewListing {
        job_id: "job_x".into(),
        output_name: "synthetic.parquet".into(),
        output_key: "outputs/acct/job_x/a1/synthetic.parquet".into(),
        title: title.into(),
        description: format!("{title}: a synthetic twin with the real table's statistics."),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        category: category.into(),
        price_minor: price,
        currency: "USD".into(),
        license: "CC-BY-4.0".into(),
        preview: serde_json::json!({"rows": []}),
        quality_score: Some(quality),
        privacy_score: Some(privacy),
        failed_checks: Vec::new(),
    }
}

fn event(kind: &str, id: &str, payment: &str) -> Vec<u8> {
    serde_json::json!({"id": id, "type": kind, "data": {"object": {"id": payment}}})
        .to_string()
        .into_bytes()
}

fn signed(secret: &str, body: &[u8], age_seconds: i64) -> http::HeaderMap {
    let t = doppel_platform::util::now_ms() / 1000 - age_seconds;
    let mut h = http::HeaderMap::new();
    h.insert(
        "stripe-signature",
        stripe_signature::sign(secret, t, body).parse().unwrap(),
    );
    h
}

async fn titles(m: &Market, q: SearchQuery) -> (Vec<String>, Option<String>) {
    let (rows, next) = m.search(&q).await.unwrap();
    (rows.into_iter().map(|l| l.title).collect(), next)
}

on_both!(listings_are_privacy_gated_and_searchable, |db: Db| async move {
    let a = accounts(&db);
    let seller = user(&a, "seller@example.com").await;
    let other = user(&a, "other@example.com").await;
    let (m, _) = market(&db);

    let err = m
        .create_listing(&meta(), &seller, listing("Risky", &[], "misc", 100, 0.9, 31.5))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "listing_refused");
    assert!(
        err.to_string().contains("31.5 is below the marketplace minimum of 40"),
        "{err}"
    );
    let mut none = listing("Unmeasured", &[], "misc", 100, 0.9, 90.0);
    none.privacy_score = None;
    let err = m.create_listing(&meta(), &seller, none).await.unwrap_err();
    assert!(err.to_string().contains("measured no privacy score"), "{err}");
    let mut failed = listing("Non-compliant", &[], "misc", 100, 0.9, 90.0);
    failed.failed_checks = vec!["hipaa: safe-harbor-dates".into()];
    let err = m.create_listing(&meta(), &seller, failed).await.unwrap_err();
    assert!(err.to_string().contains("safe-harbor-dates"), "{err}");
    let err = m
        .create_listing(&meta(), &seller, listing("Free", &[], "misc", 0, 0.9, 90.0))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("price_minor"), "{err}");

    let census = m
        .create_listing(
            &meta(),
            &seller,
            listing(
                "US census income twin",
                &["census", "Income"],
                "demographics",
                5000,
                0.9,
                85.0,
            ),
        )
        .await
        .unwrap();
    assert_eq!(census.tags, vec!["census", "income"]);
    assert_eq!(census.status, ListingStatus::Active);
    let hospital = m
        .create_listing(
            &meta(),
            &seller,
            listing("Hospital visits", &["health"], "health", 20_000, 0.8, 70.0),
        )
        .await
        .unwrap();
    m.create_listing(
        &meta(),
        &seller,
        listing("Income by county", &["income"], "demographics", 1000, 0.7, 55.0),
    )
    .await
    .unwrap();

    let q = |text: Option<&str>| SearchQuery {
        text: text.map(str::to_owned),
        limit: 10,
        ..SearchQuery::default()
    };
    // Stemmed full-text over title, description and tags.
    let (mut found, _) = titles(&m, q(Some("incomes"))).await;
    found.sort();
    assert_eq!(found, vec!["Income by county", "US census income twin"]);
    assert_eq!(titles(&m, q(Some("census"))).await.0, vec!["US census income twin"]);
    assert_eq!(titles(&m, q(Some("health"))).await.0, vec!["Hospital visits"]);
    assert!(
        titles(&m, q(Some("\" OR *"))).await.0.is_empty(),
        "query syntax is not passed through"
    );
    // Filters.
    let mut f = q(None);
    f.category = Some("Demographics".into());
    f.min_privacy = Some(60.0);
    assert_eq!(titles(&m, f).await.0, vec!["US census income twin"]);
    let mut f = q(None);
    f.tags = vec!["income".into()];
    f.max_price = Some(4999);
    assert_eq!(titles(&m, f).await.0, vec!["Income by county"]);
    let mut f = q(None);
    f.min_quality = Some(0.75);
    f.min_price = Some(5000);
    f.sort = Some(Sort::PriceDesc);
    assert_eq!(titles(&m, f).await.0, vec!["Hospital visits", "US census income twin"]);
    // Keyset pages.
    let mut f = q(None);
    f.sort = Some(Sort::PriceAsc);
    f.limit = 2;
    let (page1, next) = titles(&m, f.clone()).await;
    assert_eq!(page1, vec!["Income by county", "US census income twin"]);
    f.cursor = next;
    let (page2, next) = titles(&m, f.clone()).await;
    assert_eq!((page2, next), (vec!["Hospital visits".to_owned()], None));
    f.sort = Some(Sort::Newest);
    assert!(
        m.search(&f)
            .await
            .unwrap_err()
            .to_string()
            .contains("another sort order")
    );

    // Sellers edit and pause; nobody else can.
    let patch = ListingPatch {
        price_minor: Some(4500),
        status: Some(ListingStatus::Paused),
        ..ListingPatch::default()
    };
    let err = m
        .update_listing(&meta(), &other, &census.id, patch.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let paused = m.update_listing(&meta(), &seller, &census.id, patch).await.unwrap();
    assert_eq!((paused.price.minor, paused.status), (4500, ListingStatus::Paused));
    assert!(
        titles(&m, q(Some("census"))).await.0.is_empty(),
        "paused listings leave search"
    );
    assert!(matches!(
        m.visible_listing(&other, &census.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(m.visible_listing(&seller, &census.id).await.is_ok());
    // Renaming re-indexes.
    let renamed = ListingPatch {
        title: Some("Hospital admissions 2024".into()),
        ..ListingPatch::default()
    };
    m.update_listing(&meta(), &seller, &hospital.id, renamed).await.unwrap();
    assert_eq!(
        titles(&m, q(Some("admissions"))).await.0,
        vec!["Hospital admissions 2024"]
    );
    assert_eq!(titles(&m, q(Some("2024"))).await.0, vec!["Hospital admissions 2024"]);
});

/// Sum of the ledger per account (and overall) for one purchase.
async fn balances(m: &Market, purchase: &str) -> (HashMap<String, i64>, i64) {
    let entries = m.ledger(Some(purchase), 100).await.unwrap();
    let mut by_txn: HashMap<String, i64> = HashMap::new();
    let mut by_account: HashMap<String, i64> = HashMap::new();
    for e in &entries {
        *by_txn.entry(e.txn_id.clone()).or_default() += e.amount_minor;
        *by_account.entry(e.account.clone()).or_default() += e.amount_minor;
    }
    assert!(
        by_txn.values().all(|v| *v == 0),
        "every transaction balances: {entries:?}"
    );
    (by_account, i64::try_from(entries.len()).unwrap())
}

on_both!(
    purchases_follow_the_fetched_payment_and_the_ledger_balances,
    |db: Db| async move {
        let a = accounts(&db);
        let seller = user(&a, "seller@example.com").await;
        let buyer = user(&a, "buyer@example.com").await;
        let root = user(&a, "root@example.com").await;
        let (m, fake) = market(&db);
        let l = m
            .create_listing(
                &meta(),
                &seller,
                listing("Adult twin", &["census"], "demographics", 10_000, 0.9, 80.0),
            )
            .await
            .unwrap();
        assert!(matches!(
            m.checkout(&meta(), &seller, &l.id, "http://back").await,
            Err(Error::Refused {
                code: "not_for_sale",
                ..
            })
        ));

        let pur = m.checkout(&meta(), &buyer, &l.id, "http://back/return").await.unwrap();
        assert_eq!(pur.status, PurchaseStatus::Pending);
        assert_eq!((pur.fee_minor, pur.seller_minor), (2000, 8000), "80/20");
        let payment = pur.provider_ref.clone().unwrap();
        assert!(
            pur.checkout_url
                .as_deref()
                .unwrap()
                .ends_with(&format!("/v1/fake-pay/{payment}"))
        );
        // Asking again while it is pending gives the same checkout.
        assert_eq!(
            m.checkout(&meta(), &buyer, &l.id, "http://back/return")
                .await
                .unwrap()
                .id,
            pur.id
        );

        // Attacks: a forged signature, a stale one, a missing one.
        let body = event("payment.succeeded", "evt_1", &payment);
        for headers in [
            signed("whsec_wrong", &body, 0),
            signed(WHSEC, &body, 301),
            http::HeaderMap::new(),
        ] {
            let err = m.webhook(&headers, &body).await.unwrap_err();
            assert_eq!(err.code(), "invalid_signature", "{err}");
        }
        // A genuine event claiming success before the buyer paid changes
        // nothing: the state comes from the provider, not the body.
        let out = m.webhook(&signed(WHSEC, &body, 0), &body).await.unwrap();
        assert_eq!(
            out,
            WebhookOutcome::Synced {
                purchase_id: pur.id.clone(),
                status: PurchaseStatus::Pending
            }
        );
        assert!(m.access(&buyer, &l.id).await.unwrap().is_none());

        let back = fake.settle(&payment, true).await.unwrap();
        assert_eq!(
            back,
            format!("http://back/return?purchase={}&payment={payment}", pur.id)
        );
        let body = event("payment.succeeded", "evt_2", &payment);
        let out = m.webhook(&signed(WHSEC, &body, 0), &body).await.unwrap();
        assert!(
            matches!(
                out,
                WebhookOutcome::Synced {
                    status: PurchaseStatus::Completed,
                    ..
                }
            ),
            "{out:?}"
        );
        // Replays of the same event, and a second event, book nothing more.
        assert_eq!(
            m.webhook(&signed(WHSEC, &body, 0), &body).await.unwrap(),
            WebhookOutcome::Duplicate
        );
        let again = event("payment.succeeded", "evt_3", &payment);
        m.webhook(&signed(WHSEC, &again, 0), &again).await.unwrap();
        let (accounts_after, lines) = balances(&m, &pur.id).await;
        assert_eq!(lines, 3);
        assert_eq!(accounts_after[&format!("seller:{}", seller.account_id)], -8000);
        assert_eq!(accounts_after["platform:fees"], -2000);
        assert_eq!(accounts_after["clearing:fake"], 10_000);
        assert_eq!(m.payable(&seller.account_id).await.unwrap()[0].minor, 8000);
        assert!(m.access(&buyer, &l.id).await.unwrap().is_some());
        assert_eq!(m.listing(&l.id).await.unwrap().sales, 1);
        assert!(matches!(
            m.checkout(&meta(), &buyer, &l.id, "http://back").await,
            Err(Error::Conflict(_))
        ));
        // An event about a payment we know nothing of is acknowledged and ignored.
        let stray = event("payment.succeeded", "evt_4", "fp_someone_elses");
        assert_eq!(
            m.webhook(&signed(WHSEC, &stray, 0), &stray).await.unwrap(),
            WebhookOutcome::Ignored
        );

        // A refund reverses every line and ends access; only operators refund.
        assert!(matches!(
            m.refund(&meta(), &buyer, &pur.id).await,
            Err(Error::Forbidden(_))
        ));
        let refunded = m.refund(&meta(), &root, &pur.id).await.unwrap();
        assert_eq!(refunded.status, PurchaseStatus::Refunded);
        let (after, lines) = balances(&m, &pur.id).await;
        assert_eq!(lines, 6);
        assert!(after.values().all(|v| *v == 0), "{after:?}");
        assert!(m.access(&buyer, &l.id).await.unwrap().is_none());
        assert_eq!(m.listing(&l.id).await.unwrap().sales, 0);
        // A late "succeeded" after the refund does not grant access again.
        let late = event("payment.succeeded", "evt_5", &payment);
        m.webhook(&signed(WHSEC, &late, 0), &late).await.unwrap();
        assert_eq!(m.purchase(&pur.id).await.unwrap().status, PurchaseStatus::Refunded);
        let kinds: Vec<String> = m
            .notifications(&buyer.account_id, false, None, 50)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.kind)
            .collect();
        assert_eq!(kinds, vec!["refund", "purchase_completed"]);
        let seller_kinds: Vec<String> = m
            .notifications(&seller.account_id, false, None, 50)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.kind)
            .collect();
        assert_eq!(seller_kinds, vec!["refund", "sale_made"]);

        // Out of order: paid and refunded at the provider before any event
        // arrived; the first event books both, and nets to zero.
        let second = user(&a, "second@example.com").await;
        let p2 = m.checkout(&meta(), &second, &l.id, "http://back").await.unwrap();
        let r2 = p2.provider_ref.clone().unwrap();
        fake.settle(&r2, true).await.unwrap();
        use doppel_platform::payments::PaymentProvider as _;
        fake.refund(&r2, "r").await.unwrap();
        let refund_first = event("charge.refunded", "evt_6", &r2);
        m.webhook(&signed(WHSEC, &refund_first, 0), &refund_first)
            .await
            .unwrap();
        assert_eq!(m.purchase(&p2.id).await.unwrap().status, PurchaseStatus::Refunded);
        let (after, lines) = balances(&m, &p2.id).await;
        assert_eq!(lines, 6);
        assert!(after.values().all(|v| *v == 0));

        // A dropped webhook: reconciliation fetches the payment and settles it.
        let third = user(&a, "third@example.com").await;
        let p3 = m.checkout(&meta(), &third, &l.id, "http://back").await.unwrap();
        fake.settle(p3.provider_ref.as_deref().unwrap(), true).await.unwrap();
        assert_eq!(m.purchase(&p3.id).await.unwrap().status, PurchaseStatus::Pending);
        assert_eq!(m.reconcile().await.unwrap(), 1);
        assert_eq!(m.purchase(&p3.id).await.unwrap().status, PurchaseStatus::Completed);
        assert!(m.access(&third, &l.id).await.unwrap().is_some());

        // A declined payment fails the purchase, and grants nothing.
        let fourth = user(&a, "fourth@example.com").await;
        let p4 = m.checkout(&meta(), &fourth, &l.id, "http://back").await.unwrap();
        fake.settle(p4.provider_ref.as_deref().unwrap(), false).await.unwrap();
        assert_eq!(m.sync(&p4.id).await.unwrap().status, PurchaseStatus::Failed);
        assert!(m.ledger(Some(&p4.id), 10).await.unwrap().is_empty());

        // Across everything: the whole ledger sums to zero, and the seller is
        // owed exactly the one sale that stands.
        let all = m.ledger(None, 1000).await.unwrap();
        assert_eq!(all.iter().map(|e| e.amount_minor).sum::<i64>(), 0);
        assert_eq!(m.payable(&seller.account_id).await.unwrap()[0].minor, 8000);
        let stats = m.dashboard(&seller.account_id).await.unwrap();
        assert_eq!((stats[0].sales, stats[0].refunds, stats[0].revenue_minor), (1, 2, 8000));
    }
);

// ------------------------------------------------- Stripe, against a local fake

use doppel_platform::payments::stripe::StripeProvider;

/// What the local Stripe stand-in holds and saw.
#[derive(Default)]
struct FakeStripe {
    sessions: HashMap<String, serde_json::Value>,
    idempotency: HashMap<String, (Vec<(String, String)>, serde_json::Value)>,
    requests: Vec<(String, Option<String>, HashMap<String, String>)>,
}

type Shared = Arc<std::sync::Mutex<FakeStripe>>;

fn stripe_error(status: u16, kind: &str, message: &str) -> poem::Response {
    poem::Response::builder()
        .status(poem::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(serde_json::json!({"error": {"type": kind, "message": message}}).to_string())
}

fn stripe_ok(v: &serde_json::Value) -> poem::Response {
    poem::Response::builder()
        .content_type("application/json")
        .body(v.to_string())
}

#[poem::handler]
async fn stripe_endpoint(req: &poem::Request, body: poem::Body, state: poem::web::Data<&Shared>) -> poem::Response {
    if req.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk_test_fake") {
        return stripe_error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****");
    }
    let path = req.uri().path().to_owned();
    let raw = body.into_string().await.unwrap_or_default();
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect();
    pairs.sort();
    let form: HashMap<String, String> = pairs.iter().cloned().collect();
    let idem = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut s = state.lock().unwrap();
    s.requests.push((path.clone(), idem.clone(), form.clone()));
    if req.method() == poem::http::Method::POST {
        let Some(key) = idem.clone() else {
            return stripe_error(400, "invalid_request_error", "this fake wants an Idempotency-Key");
        };
        if let Some((seen, answer)) = s.idempotency.get(&key) {
            return if *seen == pairs {
                stripe_ok(answer)
            } else {
                stripe_error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                )
            };
        }
        let answer = match path.as_str() {
            "/v1/accounts" => {
                assert_eq!(form["type"], "express");
                serde_json::json!({"id": format!("acct_test_{}", s.requests.len()), "object": "account"})
            }
            "/v1/account_links" => {
                for k in ["account", "type", "refresh_url", "return_url"] {
                    if !form.contains_key(k) {
                        return stripe_error(400, "invalid_request_error", &format!("Missing required param: {k}."));
                    }
                }
                serde_json::json!({"object": "account_link", "expires_at": 1_800_000_300,
                                   "url": format!("https://connect.stripe.test/setup/e/{}", form["account"])})
            }
            "/v1/checkout/sessions" => {
                for k in [
                    "mode",
                    "client_reference_id",
                    "success_url",
                    "line_items[0][price_data][currency]",
                    "line_items[0][price_data][unit_amount]",
                    "payment_intent_data[application_fee_amount]",
                    "payment_intent_data[transfer_data][destination]",
                ] {
                    if !form.contains_key(k) {
                        return stripe_error(400, "invalid_request_error", &format!("Missing required param: {k}."));
                    }
                }
                let n = s.sessions.len() + 1;
                let id = format!("cs_test_{n}");
                let session = serde_json::json!({
                    "id": id, "object": "checkout.session", "url": format!("https://checkout.stripe.test/c/pay/{id}"),
                    "status": "open", "payment_status": "unpaid",
                    "amount_total": form["line_items[0][price_data][unit_amount]"].parse::<i64>().unwrap(),
                    "currency": form["line_items[0][price_data][currency]"],
                    "client_reference_id": form["client_reference_id"],
                    "payment_intent": {"id": format!("pi_test_{n}"), "object": "payment_intent",
                                       "latest_charge": {"id": format!("ch_test_{n}"), "refunded": false}},
                });
                s.sessions.insert(id, session.clone());
                session
            }
            "/v1/refunds" => {
                let pi = form["payment_intent"].clone();
                let Some(session) = s
                    .sessions
                    .values_mut()
                    .find(|x| x["payment_intent"]["id"] == pi.as_str())
                else {
                    return stripe_error(404, "invalid_request_error", &format!("No such payment_intent: '{pi}'"));
                };
                if session["payment_intent"]["latest_charge"]["refunded"] == true {
                    return stripe_error(400, "invalid_request_error", "Charge has already been refunded.");
                }
                session["payment_intent"]["latest_charge"]["refunded"] = true.into();
                serde_json::json!({"id": "re_test_1", "object": "refund", "status": "succeeded"})
            }
            _ => return stripe_error(404, "invalid_request_error", "Unrecognized request URL."),
        };
        s.idempotency.insert(key, (pairs, answer.clone()));
        return stripe_ok(&answer);
    }
    // GET /v1/checkout/sessions?payment_intent=… (a list), or …/{id}
    if path == "/v1/checkout/sessions" {
        let query: HashMap<String, String> =
            url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let pi = query.get("payment_intent").cloned().unwrap_or_default();
        let found: Vec<_> = s
            .sessions
            .values()
            .filter(|x| x["payment_intent"]["id"] == pi.as_str())
            .cloned()
            .collect();
        return stripe_ok(&serde_json::json!({"object": "list", "data": found, "has_more": false}));
    }
    let id = path.trim_start_matches("/v1/checkout/sessions/");
    match s.sessions.get(id) {
        Some(session) => stripe_ok(session),
        None => stripe_error(
            404,
            "invalid_request_error",
            &format!("No such checkout.session: '{id}'"),
        ),
    }
}

/// A local stand-in for a provider's API: every path goes to `endpoint`,
/// which sees a fresh `T` as shared state. Returns its base URL.
async fn local_provider<T, E>(endpoint: E) -> (String, Arc<std::sync::Mutex<T>>)
where
    T: Default + Send + 'static,
    E: poem::Endpoint + 'static,
{
    use poem::EndpointExt;
    use poem::listener::{Acceptor, Listener};
    let state: Arc<std::sync::Mutex<T>> = Arc::default();
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let app = poem::Route::new().at("/*path", endpoint).data(Arc::clone(&state));
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    (format!("http://{addr}"), state)
}

async fn fake_stripe() -> (String, Shared) {
    local_provider(stripe_endpoint).await
}

fn pay_session(state: &Shared, id: &str) {
    let mut s = state.lock().unwrap();
    let session = s.sessions.get_mut(id).unwrap();
    session["status"] = "complete".into();
    session["payment_status"] = "paid".into();
}

on_both!(
    the_stripe_adapter_speaks_connect_destination_charges,
    |db: Db| async move {
        let a = accounts(&db);
        let seller = user(&a, "seller@example.com").await;
        let buyer = user(&a, "buyer@example.com").await;
        let root = user(&a, "root@example.com").await;
        let (base, stripe) = fake_stripe().await;
        let provider = StripeProvider::new(&base, "sk_test_fake".into(), WHSEC.into(), 300);
        let m = Market::new(db.clone(), Arc::new(provider), PaymentSettings::default());

        let l = m
            .create_listing(
                &meta(),
                &seller,
                listing("Adult twin", &[], "demographics", 10_000, 0.9, 80.0),
            )
            .await
            .unwrap();
        let pur = m
            .checkout(&meta(), &buyer, &l.id, "https://shop.example/back")
            .await
            .unwrap();
        let session = pur.provider_ref.clone().unwrap();
        assert_eq!(
            pur.checkout_url.as_deref(),
            Some(format!("https://checkout.stripe.test/c/pay/{session}").as_str())
        );
        // The seller finishes Express onboarding on Stripe's own pages.
        let link = m.onboarding_link(&seller, "https://shop.example/seller").await.unwrap();
        assert_eq!(link, "https://connect.stripe.test/setup/e/acct_test_1");
        {
            let s = stripe.lock().unwrap();
            let (_, key, form) = s.requests.iter().rfind(|r| r.0 == "/v1/account_links").unwrap();
            assert!(key.is_some());
            assert_eq!(
                (form["type"].as_str(), form["return_url"].as_str()),
                ("account_onboarding", "https://shop.example/seller")
            );
        }
        {
            let s = stripe.lock().unwrap();
            let (_, key, account) = &s.requests[0];
            assert_eq!(
                (account["email"].as_str(), key.as_deref()),
                (
                    "seller@example.com",
                    Some(format!("account-{}", seller.account_id).as_str())
                )
            );
            let (path, key, form) = &s.requests[1];
            assert_eq!(path, "/v1/checkout/sessions");
            assert_eq!(
                key.as_deref(),
                Some(pur.id.as_str()),
                "the purchase id is the idempotency key"
            );
            assert_eq!(form["mode"], "payment");
            assert_eq!(form["line_items[0][price_data][currency]"], "usd");
            assert_eq!(form["line_items[0][price_data][unit_amount]"], "10000");
            assert_eq!(
                form["payment_intent_data[application_fee_amount]"], "2000",
                "the platform's 20 %"
            );
            assert_eq!(form["payment_intent_data[transfer_data][destination]"], "acct_test_1");
            assert_eq!(form["client_reference_id"], pur.id);
            assert!(form["success_url"].starts_with("https://shop.example/back?purchase="));
        }

        // A completed-session event before payment: Stripe says unpaid, so pending.
        let completed = |id: &str| {
            serde_json::json!({"id": id, "type": "checkout.session.completed",
                           "data": {"object": {"id": session, "object": "checkout.session"}}})
            .to_string()
            .into_bytes()
        };
        let early = completed("evt_s1");
        let out = m.webhook(&signed(WHSEC, &early, 0), &early).await.unwrap();
        assert!(
            matches!(
                out,
                WebhookOutcome::Synced {
                    status: PurchaseStatus::Pending,
                    ..
                }
            ),
            "{out:?}"
        );
        pay_session(&stripe, &session);
        let paid = completed("evt_s2");
        let out = m.webhook(&signed(WHSEC, &paid, 0), &paid).await.unwrap();
        assert!(
            matches!(
                out,
                WebhookOutcome::Synced {
                    status: PurchaseStatus::Completed,
                    ..
                }
            ),
            "{out:?}"
        );
        assert_eq!(
            m.webhook(&signed(WHSEC, &paid, 0), &paid).await.unwrap(),
            WebhookOutcome::Duplicate
        );
        assert!(m.webhook(&signed("whsec_other", &paid, 0), &paid).await.is_err());
        // Charge events name no session: acknowledged, nothing changes.
        let charge =
            serde_json::json!({"id": "evt_s3", "type": "charge.refunded", "data": {"object": {"id": "ch_test_1"}}})
                .to_string()
                .into_bytes();
        assert_eq!(
            m.webhook(&signed(WHSEC, &charge, 0), &charge).await.unwrap(),
            WebhookOutcome::Ignored
        );

        // A refund made in the Stripe dashboard arrives as a charge event
        // naming the payment intent: traced to its session, it is applied
        // once Stripe says the charge is refunded (not on the event's word).
        let buyer2 = user(&a, "buyer2@example.com").await;
        let pur2 = m
            .checkout(&meta(), &buyer2, &l.id, "https://shop.example/back")
            .await
            .unwrap();
        let session2 = pur2.provider_ref.clone().unwrap();
        pay_session(&stripe, &session2);
        assert_eq!(m.sync(&pur2.id).await.unwrap().status, PurchaseStatus::Completed);
        let intent2 = stripe.lock().unwrap().sessions[&session2]["payment_intent"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let charge_event = |id: &str| {
            serde_json::json!({"id": id, "type": "charge.refunded",
                               "data": {"object": {"id": "ch_x", "object": "charge", "payment_intent": intent2}}})
            .to_string()
            .into_bytes()
        };
        let premature = charge_event("evt_s4");
        let out = m.webhook(&signed(WHSEC, &premature, 0), &premature).await.unwrap();
        assert!(
            matches!(
                out,
                WebhookOutcome::Synced {
                    status: PurchaseStatus::Completed,
                    ..
                }
            ),
            "not refunded at Stripe: {out:?}"
        );
        stripe.lock().unwrap().sessions.get_mut(&session2).unwrap()["payment_intent"]["latest_charge"]["refunded"] =
            true.into();
        let dashboard = charge_event("evt_s5");
        let out = m.webhook(&signed(WHSEC, &dashboard, 0), &dashboard).await.unwrap();
        assert!(
            matches!(
                out,
                WebhookOutcome::Synced {
                    status: PurchaseStatus::Refunded,
                    ..
                }
            ),
            "{out:?}"
        );
        assert!(m.access(&buyer2, &l.id).await.unwrap().is_none());
        let (after2, lines2) = balances(&m, &pur2.id).await;
        assert_eq!(lines2, 6);
        assert!(after2.values().all(|v| *v == 0));

        // Refund reverses the fee and the transfer at Stripe, and in the ledger.
        let refunded = m.refund(&meta(), &root, &pur.id).await.unwrap();
        assert_eq!(refunded.status, PurchaseStatus::Refunded);
        {
            let s = stripe.lock().unwrap();
            let (path, _, form) = s.requests.iter().rev().find(|r| r.0 == "/v1/refunds").unwrap();
            assert_eq!(path, "/v1/refunds");
            assert_eq!(form["payment_intent"], "pi_test_1");
            assert_eq!(
                (
                    form["refund_application_fee"].as_str(),
                    form["reverse_transfer"].as_str()
                ),
                ("true", "true")
            );
        }
        let (after, lines) = balances(&m, &pur.id).await;
        assert_eq!(lines, 6);
        assert!(after.values().all(|v| *v == 0));

        // Error answers become errors that say what happened, and leak nothing.
        use doppel_platform::payments::PaymentProvider as _;
        let wrong_key = StripeProvider::new(&base, "sk_test_wrong".into(), WHSEC.into(), 300);
        let err = wrong_key.fetch_payment(&session).await.unwrap_err();
        assert!(
            matches!(err, Error::Unavailable(ref m) if m.contains("credentials")),
            "{err}"
        );
        let right = StripeProvider::new(&base, "sk_test_fake".into(), WHSEC.into(), 300);
        assert!(matches!(right.fetch_payment("cs_nope").await, Err(Error::NotFound(_))));
        let money = doppel_platform::payments::Money::new(500, "EUR").unwrap();
        let request = |amount| doppel_platform::payments::CheckoutRequest {
            reference: "pur_x",
            buyer_email: "buyer@example.com",
            amount,
            seller_account: "acct_test_1",
            platform_fee_minor: 100,
            description: "x",
            return_url: "https://shop.example/back",
            idempotency_key: "same-key",
        };
        right.create_checkout(request(&money)).await.unwrap();
        let other = doppel_platform::payments::Money::new(900, "EUR").unwrap();
        let err = right.create_checkout(request(&other)).await.unwrap_err();
        assert_eq!(err.code(), "payment_provider_error");
        assert!(err.to_string().contains("same parameters"), "{err}");
        let unreachable = StripeProvider::new("http://127.0.0.1:9", "sk_test_fake".into(), WHSEC.into(), 300);
        assert!(matches!(
            unreachable.fetch_payment(&session).await,
            Err(Error::Unavailable(_))
        ));
    }
);

// -------------------------------------------- Flutterwave, against a local fake

use doppel_platform::payments::PayoutDetails;
use doppel_platform::payments::flutterwave::FlutterwaveProvider;

const FLW_KEY: &str = "FLWSECK_TEST-fake";
const FLW_HASH: &str = "flw-secret-hash";

/// What the local Flutterwave stand-in holds and saw.
#[derive(Default)]
struct FakeFlutterwave {
    /// Payment links by `tx_ref`: the request that opened them.
    links: HashMap<String, serde_json::Value>,
    /// Transactions by id.
    transactions: Vec<serde_json::Value>,
    refunded: Vec<u64>,
    requests: Vec<(String, String, serde_json::Value)>,
}

type FlwShared = Arc<std::sync::Mutex<FakeFlutterwave>>;

fn flw(status: u16, message: &str, data: serde_json::Value) -> poem::Response {
    let ok = (200..300).contains(&status);
    poem::Response::builder()
        .status(poem::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/json")
        .body(
            serde_json::json!({"status": if ok { "success" } else { "error" }, "message": message, "data": data})
                .to_string(),
        )
}

#[poem::handler]
async fn flutterwave_endpoint(
    req: &poem::Request,
    body: poem::Body,
    state: poem::web::Data<&FlwShared>,
) -> poem::Response {
    if req.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {FLW_KEY}")) {
        return flw(401, "Invalid authorization key", serde_json::Value::Null);
    }
    let path = req.uri().path().to_owned();
    let query: HashMap<String, String> = url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let raw = body.into_string().await.unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null);
    let mut s = state.lock().unwrap();
    s.requests.push((req.method().to_string(), path.clone(), json.clone()));
    let not_found = || flw(400, "No transaction was found for this id", serde_json::Value::Null);
    let parts: Vec<&str> = path.trim_start_matches("/v3/").split('/').collect();
    match (req.method().as_str(), parts.as_slice()) {
        ("POST", ["subaccounts"]) => {
            for k in [
                "account_bank",
                "account_number",
                "business_name",
                "country",
                "split_type",
                "split_value",
            ] {
                if json.get(k).is_none() {
                    return flw(400, &format!("{k} is required"), serde_json::Value::Null);
                }
            }
            if json["account_number"] == "0000000000" {
                return flw(
                    400,
                    "Sorry we couldn't verify your account number kindly pass a valid account number",
                    serde_json::Value::Null,
                );
            }
            let n = s.requests.len();
            flw(
                200,
                "Subaccount created",
                serde_json::json!({"id": n, "subaccount_id": format!("RS_TEST{n}"), "split_type": json["split_type"],
                                   "split_value": json["split_value"], "bank_name": "ACCESS BANK NIGERIA"}),
            )
        }
        ("POST", ["payments"]) => {
            for k in ["tx_ref", "amount", "currency", "redirect_url"] {
                if json.get(k).is_none() {
                    return flw(400, &format!("{k} is required"), serde_json::Value::Null);
                }
            }
            if json.pointer("/customer/email").is_none() {
                return flw(400, "customer.email is required", serde_json::Value::Null);
            }
            let tx_ref = json["tx_ref"].as_str().unwrap().to_owned();
            s.links.insert(tx_ref.clone(), json.clone());
            flw(
                200,
                "Hosted Link",
                serde_json::json!({"link": format!("https://checkout.flutterwave.test/v3/hosted/pay/{tx_ref}")}),
            )
        }
        ("GET", ["transactions", "verify_by_reference"]) => {
            let tx_ref = query.get("tx_ref").cloned().unwrap_or_default();
            match s.transactions.iter().rev().find(|t| t["tx_ref"] == tx_ref.as_str()) {
                Some(t) => flw(200, "Transaction fetched successfully", t.clone()),
                None => not_found(),
            }
        }
        ("GET", ["transactions", id, "verify"]) => match s
            .transactions
            .iter()
            .find(|t| id.parse::<u64>().is_ok_and(|id| t["id"] == id))
        {
            Some(t) => flw(200, "Transaction fetched successfully", t.clone()),
            None => not_found(),
        },
        ("POST", ["transactions", id, "refund"]) => {
            let Ok(id) = id.parse::<u64>() else { return not_found() };
            let Some(t) = s.transactions.iter().find(|t| t["id"] == id).cloned() else {
                return not_found();
            };
            if s.refunded.contains(&id) {
                return flw(
                    400,
                    "Transaction has already been fully refunded",
                    serde_json::Value::Null,
                );
            }
            if json["amount"] != t["amount"] {
                return flw(400, "Refund amount does not match", serde_json::Value::Null);
            }
            s.refunded.push(id);
            flw(
                200,
                "Transaction refund initiated",
                serde_json::json!({"id": 75923, "tx_id": id, "amount_refunded": json["amount"], "status": "completed",
                                   "destination": "payment_source"}),
            )
        }
        _ => flw(404, "Route not found", serde_json::Value::Null),
    }
}

async fn fake_flutterwave() -> (String, FlwShared) {
    local_provider(flutterwave_endpoint).await
}

/// The buyer pays (or fails to) on Flutterwave's page: a transaction for
/// the link's `tx_ref`, as Flutterwave records it. Returns its id.
fn flw_pay(state: &FlwShared, tx_ref: &str, status: &str) -> u64 {
    let mut s = state.lock().unwrap();
    let link = s.links[tx_ref].clone();
    let id = 285_959_875 + u64::try_from(s.transactions.len()).unwrap();
    s.transactions.push(serde_json::json!({
        "id": id, "tx_ref": tx_ref, "flw_ref": format!("FLW-MOCK-{id}"), "amount": link["amount"],
        "charged_amount": link["amount"], "currency": link["currency"], "status": status,
        "customer": link["customer"],
    }));
    id
}

fn flw_event(tx: u64, tx_ref: &str, status: &str) -> Vec<u8> {
    serde_json::json!({"event": "charge.completed",
                       "data": {"id": tx, "tx_ref": tx_ref, "status": status, "amount": 1}})
    .to_string()
    .into_bytes()
}

fn flw_signed(hash: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("verif-hash", hash.parse().unwrap());
    h
}

on_both!(the_flutterwave_adapter_splits_into_subaccounts, |db: Db| async move {
    let a = accounts(&db);
    let seller = user(&a, "seller@example.com").await;
    let buyer = user(&a, "buyer@example.com").await;
    let root = user(&a, "root@example.com").await;
    let other = user(&a, "other@example.com").await;
    let (base, fw) = fake_flutterwave().await;
    let provider = FlutterwaveProvider::new(&base, FLW_KEY.into(), FLW_HASH.into(), 2000);
    let settings = PaymentSettings {
        reconcile_after_seconds: 0,
        ..PaymentSettings::default()
    };
    let m = Market::new(db.clone(), Arc::new(provider), settings);
    let naira = |price| {
        let mut l = listing("Lagos clinics twin", &["health"], "health", price, 0.9, 80.0);
        l.currency = "NGN".into();
        l
    };

    // No onboarding pages at Flutterwave: the payout account is the step.
    assert_eq!(
        m.onboarding_link(&seller, "https://shop.example/seller")
            .await
            .unwrap_err()
            .code(),
        "payout_details_required"
    );
    // Flutterwave pays sellers into a bank account: none given, no listing.
    let err = m.create_listing(&meta(), &seller, naira(1_000_050)).await.unwrap_err();
    assert_eq!(err.code(), "payout_details_required", "{err}");
    assert!(m.payout_account(&seller).await.unwrap().is_none());
    // A bank account Flutterwave cannot verify: its reason, no account.
    let bad = PayoutDetails::new("Acme Data", "044", "0000000000", "NG").unwrap();
    let err = m.set_payout_account(&meta(), &seller, &bad).await.unwrap_err();
    assert_eq!(err.code(), "payment_provider_error");
    assert!(err.to_string().contains("verify your account number"), "{err}");
    let bank = PayoutDetails::new("Acme Data", "044", "0690000031", "NG").unwrap();
    let acct = m.set_payout_account(&meta(), &seller, &bank).await.unwrap();
    assert_eq!(acct.provider, "flutterwave");
    assert!(acct.needs_payout_details);
    assert_eq!(
        acct.payout_summary.as_deref(),
        Some("Acme Data · bank 044 · ****0031 · NG")
    );
    let subaccount = acct.provider_account_id.clone();
    assert!(subaccount.starts_with("RS_"), "{subaccount}");
    {
        let s = fw.lock().unwrap();
        let (_, path, body) = s.requests.iter().rfind(|r| r.1 == "/v3/subaccounts").unwrap();
        assert_eq!(path, "/v3/subaccounts");
        assert_eq!(
            (&body["account_bank"], &body["account_number"], &body["country"]),
            (&"044".into(), &"0690000031".into(), &"NG".into())
        );
        assert_eq!(
            (&body["split_type"], &body["split_value"]),
            (&"percentage".into(), &0.2.into())
        );
        assert_eq!(body["business_email"], "seller@example.com");
    }

    // ₦10,000.50: Flutterwave takes decimals in naira; the seller's flat
    // share is exactly the 80 % the ledger books.
    let l = m.create_listing(&meta(), &seller, naira(1_000_050)).await.unwrap();
    let pur = m
        .checkout(&meta(), &buyer, &l.id, "https://shop.example/back")
        .await
        .unwrap();
    assert_eq!(
        pur.provider_ref.as_deref(),
        Some(pur.id.as_str()),
        "tx_ref is the purchase id"
    );
    assert_eq!(
        pur.checkout_url.as_deref(),
        Some(format!("https://checkout.flutterwave.test/v3/hosted/pay/{}", pur.id).as_str())
    );
    assert_eq!((pur.fee_minor, pur.seller_minor), (200_010, 800_040));
    {
        let s = fw.lock().unwrap();
        let opened = &s.links[&pur.id];
        assert_eq!(opened["amount"], serde_json::json!(10000.5));
        assert_eq!(opened["currency"], "NGN");
        assert_eq!(opened["customer"]["email"], "buyer@example.com");
        assert!(
            opened["redirect_url"]
                .as_str()
                .unwrap()
                .starts_with("https://shop.example/back?purchase=")
        );
        assert_eq!(
            opened["subaccounts"],
            serde_json::json!([{"id": subaccount, "transaction_charge_type": "flat_subaccount",
                                    "transaction_charge": 8000.4}])
        );
    }

    // Before payment there is no transaction: pending, no error.
    assert_eq!(m.sync(&pur.id).await.unwrap().status, PurchaseStatus::Pending);
    // Wrong, missing hash: refused; an event naming a transaction
    // Flutterwave does not know changes nothing.
    let early = flw_event(999, &pur.id, "successful");
    assert_eq!(
        m.webhook(&flw_signed("not-the-hash"), &early).await.unwrap_err().code(),
        "invalid_signature"
    );
    assert!(m.webhook(&http::HeaderMap::new(), &early).await.is_err());
    let out = m.webhook(&flw_signed(FLW_HASH), &early).await.unwrap();
    assert!(
        matches!(
            out,
            WebhookOutcome::Synced {
                status: PurchaseStatus::Pending,
                ..
            }
        ),
        "{out:?}"
    );

    // Paid: the webhook's transaction is verified by id, then completed.
    let tx = flw_pay(&fw, &pur.id, "successful");
    let paid = flw_event(tx, &pur.id, "successful");
    let out = m.webhook(&flw_signed(FLW_HASH), &paid).await.unwrap();
    assert!(
        matches!(
            out,
            WebhookOutcome::Synced {
                status: PurchaseStatus::Completed,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(
        fw.lock()
            .unwrap()
            .requests
            .iter()
            .any(|r| r.1 == format!("/v3/transactions/{tx}/verify")),
        "verified by transaction id"
    );
    assert_eq!(
        m.webhook(&flw_signed(FLW_HASH), &paid).await.unwrap(),
        WebhookOutcome::Duplicate
    );
    let (books, lines) = balances(&m, &pur.id).await;
    assert_eq!(lines, 3);
    assert_eq!(
        m.bought_outputs(&buyer.account_id).await.unwrap(),
        vec![(pur.id.clone(), l.output_key.clone())],
        "what the buyer may read (Flight SQL's purchases schema)"
    );
    assert_eq!(books[&format!("seller:{}", seller.account_id)], -800_040);
    assert_eq!(books["platform:fees"], -200_010);

    // Another buyer's purchase, named in an event with the first
    // buyer's transaction: the fetched transaction is not theirs.
    let pur2 = m
        .checkout(&meta(), &other, &l.id, "https://shop.example/back")
        .await
        .unwrap();
    let stolen = flw_event(tx, &pur2.id, "successful");
    let out = m.webhook(&flw_signed(FLW_HASH), &stolen).await.unwrap();
    assert!(
        matches!(
            out,
            WebhookOutcome::Synced {
                status: PurchaseStatus::Pending,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(m.access(&other, &l.id).await.unwrap().is_none());
    // The redirect naming someone else's transaction proves nothing either.
    assert_eq!(
        m.sync_charge(&pur2.id, Some(&tx.to_string())).await.unwrap().status,
        PurchaseStatus::Pending
    );
    assert!(m.sync_charge(&pur2.id, Some("1/../../x")).await.is_err());
    // A failed attempt fails the purchase and books nothing…
    let declined = flw_pay(&fw, &pur2.id, "failed");
    assert_eq!(
        m.sync_charge(&pur2.id, Some(&declined.to_string()))
            .await
            .unwrap()
            .status,
        PurchaseStatus::Failed
    );
    assert_eq!(balances(&m, &pur2.id).await.1, 0);
    // …and a later successful attempt, whose webhook is dropped, is
    // settled by reconciliation through the reference.
    flw_pay(&fw, &pur2.id, "successful");
    assert_eq!(m.sync(&pur2.id).await.unwrap().status, PurchaseStatus::Completed);

    // Refund: the whole amount, in naira, by transaction id; access ends.
    let refunded = m.refund(&meta(), &root, &pur.id).await.unwrap();
    assert_eq!(refunded.status, PurchaseStatus::Refunded);
    {
        let s = fw.lock().unwrap();
        let (_, _, body) = s
            .requests
            .iter()
            .rfind(|r| r.1 == format!("/v3/transactions/{tx}/refund"))
            .unwrap();
        assert_eq!(body["amount"], serde_json::json!(10000.5));
        assert_eq!(s.refunded, vec![tx]);
    }
    assert!(m.access(&buyer, &l.id).await.unwrap().is_none());
    assert!(m.bought_outputs(&buyer.account_id).await.unwrap().is_empty());
    let (after, lines) = balances(&m, &pur.id).await;
    assert_eq!(lines, 6);
    assert!(after.values().all(|v| *v == 0), "{after:?}");
    // Flutterwave still calls the transaction successful: a late sync or
    // a replayed event does not bring access back.
    assert_eq!(m.sync(&pur.id).await.unwrap().status, PurchaseStatus::Refunded);
    let late = flw_event(tx, &pur.id, "successful");
    assert_eq!(
        m.webhook(&flw_signed(FLW_HASH), &late).await.unwrap(),
        WebhookOutcome::Duplicate
    );
    assert!(m.refund(&meta(), &root, &pur.id).await.is_err());

    // Error answers become errors that say what happened and leak nothing.
    use doppel_platform::payments::PaymentProvider as _;
    let wrong_key = FlutterwaveProvider::new(&base, "FLWSECK_TEST-wrong".into(), FLW_HASH.into(), 2000);
    let err = wrong_key.fetch_payment(&pur.id).await.unwrap_err();
    assert!(
        matches!(err, Error::Unavailable(ref m) if m.contains("credentials")),
        "{err}"
    );
    let unreachable = FlutterwaveProvider::new("http://127.0.0.1:9", FLW_KEY.into(), FLW_HASH.into(), 2000);
    assert!(matches!(
        unreachable.fetch_payment(&pur.id).await,
        Err(Error::Unavailable(_))
    ));
    // The whole ledger still sums to zero.
    let all = m.ledger(None, 1000).await.unwrap();
    assert_eq!(all.iter().map(|e| e.amount_minor).sum::<i64>(), 0);
});
