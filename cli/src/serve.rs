//! `doppel serve` and `doppel worker`: the same binary is the API server and
//! a stateless worker; all they share is the metadata store and the object
//! storage named by the settings.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use doppel_app::AppState;
use doppel_app::jobs::PipelineRunner;
use doppel_host::plan::Catalog;
use doppel_platform::jobs::{Queue, Worker};
use doppel_platform::{Db, Settings, Storage};

use crate::{Global, ServeArgs};

fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let data_dir = args.data_dir.clone();
    let file = args
        .config
        .clone()
        .or_else(|| data_dir.as_ref().map(|d| d.join("doppel.toml")))
        .unwrap_or_else(|| "doppel-data/doppel.toml".into());
    let mut s = Settings::load(Some(&file), std::env::vars())?;
    if let Some(d) = data_dir {
        s.data_dir = d;
    }
    if let Some(a) = &args.http_addr {
        s.http_addr.clone_from(a);
    }
    if let Some(a) = &args.flight_addr {
        s.flight_addr.clone_from(a);
    }
    Ok(s)
}

pub(crate) fn serve(global: &Global, args: &ServeArgs, worker_only: bool) -> anyhow::Result<ExitCode> {
    let settings = settings(args)?;
    if args.print_config {
        print!("{}", settings.to_redacted_toml());
        return Ok(ExitCode::SUCCESS);
    }
    let catalog = Arc::new(Catalog::new(crate::commands::registry(global, false)?));
    // A bad engine URL stops the server here, not its first DP job.
    let engine = doppel_host::exec::EngineOptions {
        engine: settings.engine.url.parse().context("setting engine.url")?,
        scratch: settings.engine_scratch(),
        part_rows: settings.engine.part_rows,
    };
    if engine.engine.is_distributed() {
        tracing::info!(engine = %engine.engine, scratch = %engine.scratch.display(), "PrivSyn fits count on the cluster.");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("data dir {}", settings.data_dir.display()))?;
        let db = Db::connect(&settings.database_url()).await.context("metadata store")?;
        let key = settings.signing_key()?;
        let storage = Storage::open(&settings, key).context("object storage")?;
        let queue = Queue::new(db.clone(), &settings.jobs);
        let runner = Arc::new(
            PipelineRunner::new(storage.clone(), Arc::clone(&catalog), db.clone())
                .with_engine(engine)
                .with_side_by_side_bytes(settings.jobs.side_by_side_mb.saturating_mul(1 << 20)),
        );
        let workers = args
            .workers
            .unwrap_or(if worker_only { 1 } else { settings.jobs.workers });
        let stop = Arc::new(AtomicBool::new(false));
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
        let mut handles = Vec::new();
        for i in 0..workers {
            let w = Worker::new(
                queue.clone(),
                Arc::clone(&runner) as Arc<dyn doppel_platform::jobs::JobHandler>,
                format!("{host}-{}-{i}", std::process::id()),
                Duration::from_millis(settings.jobs.poll_ms.max(10)),
            );
            handles.push(tokio::spawn(w.run(Arc::clone(&stop))));
        }
        // One ctrl-c stops both servers: each waits on the same watch.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Shutting down.");
            let _ = stop_tx.send(true);
        });
        let shutdown = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stopped| *stopped).await;
            }
        };
        if worker_only {
            tracing::info!(workers, database = ?db.backend, storage = storage.url(), "Worker running.");
            shutdown().await;
        } else {
            let addr = settings.http_addr.clone();
            let flight_addr = settings.flight_addr.clone();
            // Uploads are read by child processes of this very binary.
            let me = std::env::current_exe().context("locating the doppel binary")?;
            let state = Arc::new(AppState::new(settings, db, storage, catalog)?.with_ingest_program(me));
            // Settle purchases whose webhook never came.
            let every = state.settings.payments.reconcile_seconds;
            if every > 0 {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(every));
                    loop {
                        tick.tick().await;
                        match state.market.reconcile().await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(settled = n, "Reconciled pending purchases."),
                            Err(e) => tracing::warn!(error = %e, "Reconciliation failed; will retry."),
                        }
                    }
                });
            }
            let flight = if flight_addr.is_empty() || flight_addr == "off" {
                None
            } else {
                let socket: std::net::SocketAddr = flight_addr
                    .parse()
                    .with_context(|| format!("flight_addr `{flight_addr}`: expected host:port, or `off`"))?;
                // Bind now so a taken port is an error at start, not later.
                let listener = tokio::net::TcpListener::bind(socket)
                    .await
                    .with_context(|| format!("Flight listener on {socket}"))?;
                let stopped = shutdown();
                eprintln!("doppel Flight + Flight SQL on grpc://{socket}");
                tracing::info!(%socket, "Flight listening.");
                Some(tokio::spawn(doppel_flight_server::serve_listener(
                    Arc::clone(&state),
                    listener,
                    stopped,
                )))
            };
            tracing::info!(%addr, workers, "Console at /, REST API at /v1, docs at /docs.");
            eprintln!("doppel serving on http://{addr} (console: http://{addr}/, API docs: http://{addr}/docs)");
            let doors = Doors {
                console: doppel_console::app(Arc::clone(&state)).context("web console")?,
                rest: doppel_openapi_server::app(state),
            };
            poem::Server::new(poem::listener::TcpListener::bind(addr))
                .run_with_graceful_shutdown(doors, shutdown(), Some(Duration::from_secs(10)))
                .await
                .context("HTTP server")?;
            if let Some(f) = flight {
                f.await.context("Flight server")?.context("Flight server")?;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            // Running jobs keep their leases until they expire; another worker
            // resumes them. Waiting here only lets an idle loop exit cleanly.
            let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// The two HTTP doors on one port: the REST API owns `/v1`, its
/// documentation and the probes; every other path is the web console's.
/// Neither door knows the other.
struct Doors<C, R> {
    console: C,
    rest: R,
}

impl<C: poem::Endpoint, R: poem::Endpoint> poem::Endpoint for Doors<C, R> {
    type Output = poem::Response;

    async fn call(&self, req: poem::Request) -> poem::Result<poem::Response> {
        use poem::IntoResponse;
        if doppel_console::owns(req.uri().path()) {
            self.console.call(req).await.map(IntoResponse::into_response)
        } else {
            self.rest.call(req).await.map(IntoResponse::into_response)
        }
    }
}
