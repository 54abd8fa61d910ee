//! What one REST request costs the server, in-process (no sockets): the
//! middleware (request id, rate limit, metrics), bearer authentication and a
//! store read, on the embedded SQLite store.
//!
//! `cargo bench -p doppel-openapi-server`

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use doppel_app::AppState;
use doppel_host::plan::Catalog;
use doppel_host::plugin::{HostConfig, PluginHost, PluginRegistry};
use doppel_openapi_server::app;
use doppel_platform::audit::RequestMeta;
use doppel_platform::{Db, Settings, Storage, keys};
use poem::test::TestClient;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    settings.auth.insecure_fast_hashing = true;
    settings.limits.requests_per_second = 1_000_000;
    settings.limits.burst = 1_000_000;
    let host = PluginHost::new(HostConfig {
        cache_dir: None,
        ..HostConfig::default()
    })
    .expect("plugin host");
    let catalog = Arc::new(Catalog::new(PluginRegistry::new(host)));
    let (client, key) = rt.block_on(async {
        let db = Db::connect(&settings.database_url()).await.expect("database");
        let storage = Storage::open(&settings, settings.signing_key().expect("key")).expect("storage");
        let state = Arc::new(AppState::new(settings, db.clone(), storage, catalog).expect("state"));
        let meta = RequestMeta::default();
        state
            .accounts
            .sign_up(&meta, "bench@example.com", "correct horse battery")
            .await
            .expect("sign up");
        let s = state
            .accounts
            .log_in(&meta, "bench@example.com", "correct horse battery", None, None)
            .await
            .expect("log in");
        let p = state.accounts.authenticate(&s.token, None).await.expect("session");
        let k = keys::create(&db, &meta, &p, "bench", &["datasets:read".into()], None, 30)
            .await
            .expect("key");
        (TestClient::new(app(state)), k.secret)
    });
    let auth = format!("Bearer {key}");
    let mut g = c.benchmark_group("request");
    g.bench_function("healthz", |b| {
        b.iter(|| rt.block_on(async { client.get("/healthz").send().await.assert_status_is_ok() }));
    });
    g.bench_function("list_datasets_with_api_key", |b| {
        b.iter(|| {
            rt.block_on(async {
                client
                    .get("/v1/datasets")
                    .header("authorization", &auth)
                    .send()
                    .await
                    .assert_status_is_ok();
            });
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
