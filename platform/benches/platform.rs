//! The platform's hot paths on the embedded SQLite store: resolving a bearer
//! credential (every request does it), claiming and finishing jobs (every
//! worker loop does it), and password hashing at production cost.
//!
//! `cargo bench -p doppel-platform`

use criterion::{Criterion, criterion_group, criterion_main};
use doppel_platform::accounts::Accounts;
use doppel_platform::audit::RequestMeta;
use doppel_platform::jobs::{Manifest, Queue};
use doppel_platform::settings::{AuthSettings, JobSettings};
use doppel_platform::{Db, keys};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
    let db = rt.block_on(Db::connect(&url)).expect("database");
    let auth = AuthSettings {
        insecure_fast_hashing: true,
        ..AuthSettings::default()
    };
    let accounts = Accounts::new(db.clone(), auth, vec![1; 32]);
    let meta = RequestMeta::default();
    let (session, key) = rt.block_on(async {
        accounts
            .sign_up(&meta, "bench@example.com", "correct horse battery")
            .await
            .expect("sign up");
        let s = accounts
            .log_in(&meta, "bench@example.com", "correct horse battery", None, None)
            .await
            .expect("log in");
        let p = accounts.authenticate(&s.token, None).await.expect("session");
        let k = keys::create(&db, &meta, &p, "bench", &["datasets:read".into()], None, 30)
            .await
            .expect("key");
        (s.token, k.secret)
    });

    let mut g = c.benchmark_group("authenticate");
    g.bench_function("api_key", |b| {
        b.iter(|| rt.block_on(accounts.authenticate(&key, None)).expect("key"));
    });
    g.bench_function("session", |b| {
        b.iter(|| rt.block_on(accounts.authenticate(&session, None)).expect("session"));
    });
    g.finish();

    let queue = Queue::new(db.clone(), &JobSettings::default());
    let principal = rt.block_on(accounts.authenticate(&session, None)).expect("session");
    let spec = serde_json::json!({"pipeline": "bench"});
    c.bench_function("job_submit_claim_finish", |b| {
        b.iter(|| {
            rt.block_on(async {
                queue.submit(&meta, &principal, "bench", &spec).await.expect("submit");
                let lease = queue.claim("bench").await.expect("claim").expect("a job");
                queue
                    .finish_succeeded(&lease, &Manifest::default())
                    .await
                    .expect("finish");
            });
        });
    });

    // Production cost (argon2id, m = 19 MiB, t = 2): what a login costs the server.
    let mut g = c.benchmark_group("password");
    g.sample_size(10);
    let production = Accounts::new(db.clone(), AuthSettings::default(), vec![1; 32]);
    rt.block_on(production.sign_up(&meta, "slow@example.com", "correct horse battery"))
        .expect("sign up");
    g.bench_function("login_argon2id", |b| {
        b.iter(|| {
            rt.block_on(production.log_in(&meta, "slow@example.com", "correct horse battery", None, None))
                .expect("log in")
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
