//! The platform against real metadata stores: every test runs on a fresh
//! SQLite file and, when `DOPPEL_TEST_POSTGRES` names a server (CI sets it to
//! the one on 127.0.0.1:5432), on a fresh PostgreSQL database created for the
//! test and dropped afterwards.

#![allow(clippy::print_stderr, reason = "a test says which backend legs it skipped")]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[macro_use]
mod support;

use support::{accounts, meta, user};

use doppel_platform::accounts::totp_at;
use doppel_platform::authz::{Credential, Principal, Scope};
use doppel_platform::jobs::{JobFailure, JobState, Manifest, Queue};
use doppel_platform::settings::{JobSettings, PrivacySettings};
use doppel_platform::{Db, Error, datasets, idempotency, keys, privacy};

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

on_both!(
    heartbeats_with_and_without_progress_share_a_statement,
    |db: Db| async move {
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
    }
);

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
