//! The application core without any door: SQLite and local files, the
//! first-party plugins, two accounts. What REST, Flight and the console rely
//! on is checked here once — lookups that authorize, the dataset name rule,
//! job submission that binds its own input, the pipeline runner, and the
//! listing gate reading the typed report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use doppel_app::jobs::{JobRequest, JobView, PipelineRunner, SubmitError};
use doppel_app::listings::ListJob;
use doppel_app::{AppState, access, datasets, jobs, listings};
use doppel_host::builtins::source::Format;
use doppel_host::plan::Catalog;
use doppel_host::plugin::{HostConfig, PluginHost, PluginRegistry};
use doppel_host::report::Report;
use doppel_platform::audit::RequestMeta;
use doppel_platform::authz::{Principal, Scope};
use doppel_platform::jobs::{JobState, Manifest, OutputFile, Worker};
use doppel_platform::{Db, Error, Settings, Storage};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn catalog() -> Arc<Catalog> {
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")),
        ..HostConfig::default()
    })
    .unwrap();
    let mut reg = PluginRegistry::new(host);
    for p in doppel_plugins::FIRST_PARTY {
        reg.add_embedded(p.manifest, p.wasm, p.name).unwrap();
    }
    Arc::new(Catalog::new(reg))
}

struct Core {
    state: Arc<AppState>,
    _dir: tempfile::TempDir,
}

async fn core() -> Core {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    settings.auth.insecure_fast_hashing = true;
    let db = Db::connect(&settings.database_url()).await.unwrap();
    let storage = Storage::open(&settings, settings.signing_key().unwrap()).unwrap();
    let state = Arc::new(AppState::new(settings, db, storage, catalog()).unwrap());
    Core { state, _dir: dir }
}

async fn user(state: &AppState, email: &str) -> Principal {
    let meta = RequestMeta::default();
    state
        .accounts
        .sign_up(&meta, email, "correct horse battery")
        .await
        .unwrap();
    let s = state
        .accounts
        .log_in(&meta, email, "correct horse battery", None, None)
        .await
        .unwrap();
    state.accounts.authenticate(&s.token, None).await.unwrap()
}

/// Upload `file` (from `data/`) as `name`, as every door does.
async fn upload(
    state: &AppState,
    p: &Principal,
    file: &str,
    name: &str,
) -> doppel_platform::Result<doppel_platform::datasets::Dataset> {
    let work = tempfile::tempdir().unwrap();
    let ingested = state
        .ingest
        .ingest(&repo().join("data").join(file), file, Format::Csv, work.path())
        .await
        .unwrap();
    datasets::register(state, &RequestMeta::default(), p, name, &ingested).await
}

fn request(dataset: &str, overrides: &[&str]) -> JobRequest {
    JobRequest {
        pipeline: Some("quickstart".into()),
        generator: None,
        dataset_id: Some(dataset.into()),
        model: None,
        overrides: overrides.iter().map(|o| (*o).to_owned()).collect(),
        csv: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_is_the_same_thing_through_every_lookup() {
    let c = core().await;
    let (ada, bob) = (
        user(&c.state, "ada@example.com").await,
        user(&c.state, "bob@example.com").await,
    );
    let first = upload(&c.state, &ada, "adult.csv", "  adult ").await.unwrap();
    assert_eq!(first.name, "adult", "names are trimmed once, for every door");
    let second = upload(&c.state, &ada, "adult.csv", "adult").await.unwrap();

    // By id, by name (latest), by name and version.
    let by_id = access::dataset(&c.state, &ada, &first.id, Scope::DatasetsRead)
        .await
        .unwrap();
    assert_eq!(by_id.id, first.id);
    let latest = access::dataset_by_key(&c.state, &ada, "adult", None).await.unwrap();
    assert_eq!(latest.id, second.id);
    let v1 = access::dataset_by_key(&c.state, &ada, "adult", Some(1)).await.unwrap();
    assert_eq!(
        (v1.id.as_str(), access::version_of(&c.state, &v1).await.unwrap()),
        (first.id.as_str(), 1)
    );
    assert!(matches!(
        access::dataset_by_key(&c.state, &ada, "adult", Some(3)).await,
        Err(Error::NotFound(m)) if m.contains("2 version")
    ));

    // Another account's dataset is missing, however it is asked for.
    for e in [
        access::dataset(&c.state, &bob, &first.id, Scope::DatasetsRead)
            .await
            .unwrap_err(),
        access::dataset_by_key(&c.state, &bob, &first.id, None)
            .await
            .unwrap_err(),
        access::dataset_by_key(&c.state, &bob, "adult", None).await.unwrap_err(),
        datasets::delete(&c.state, &RequestMeta::default(), &bob, &first.id)
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(e, Error::NotFound(_)), "{e}");
    }

    // A name that reads as an id (or a path) is refused by the one rule.
    for bad in ["ds_lookalike", "a/b", ""] {
        let e = upload(&c.state, &ada, "adult.csv", bad).await.unwrap_err();
        assert!(
            matches!(&e, Error::Invalid { field, .. } if field == "name"),
            "{bad:?}: {e}"
        );
    }

    datasets::delete(&c.state, &RequestMeta::default(), &ada, &first.id)
        .await
        .unwrap();
    assert!(
        access::dataset(&c.state, &ada, &first.id, Scope::DatasetsRead)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_bind_their_own_input_and_run_without_a_door() {
    let c = core().await;
    let (ada, bob) = (
        user(&c.state, "ada@example.com").await,
        user(&c.state, "bob@example.com").await,
    );
    let d = upload(&c.state, &ada, "adult.csv", "adult").await.unwrap();
    let meta = RequestMeta::default();

    // Nothing a caller sends may point a stage at a file or lift a cap.
    for (o, field) in [
        ("source.path=\"/etc/passwd\"", "overrides[0]"),
        ("pii.uses=\"builtin:profile\"", "overrides[0]"),
        ("synth.rows=1000000000", "synth.rows"),
    ] {
        match jobs::submit(&c.state, &meta, &ada, request(&d.id, &[o])).await {
            Err(SubmitError::NotAllowed { field: f, .. }) => assert_eq!(f, field, "{o}"),
            other => panic!("{o}: {other:?}"),
        }
    }
    // Another account's dataset is "no such dataset" in the request.
    match jobs::submit(&c.state, &meta, &bob, request(&d.id, &[])).await {
        Err(SubmitError::Platform(Error::Invalid { field, message })) => {
            assert_eq!((field.as_str(), message.as_str()), ("dataset_id", "no such dataset"));
        }
        other => panic!("{other:?}"),
    }

    let job = jobs::submit(
        &c.state,
        &meta,
        &ada,
        request(&d.id, &["synth.seed=7", "synth.rows=2000"]),
    )
    .await
    .unwrap();
    let view = JobView::of(&job);
    assert_eq!(
        (view.pipeline.as_str(), view.dataset_id.as_deref(), view.state.as_str()),
        ("quickstart", Some(d.id.as_str()), "queued")
    );
    assert!(matches!(
        access::job(&c.state, &bob, &job.id, Scope::DatasetsRead).await,
        Err(Error::NotFound(_))
    ));

    // One worker runs it, as `doppel worker` would.
    let runner = Arc::new(PipelineRunner::new(
        c.state.storage.clone(),
        Arc::clone(&c.state.catalog),
        c.state.db.clone(),
    ));
    let worker = Worker::new(c.state.queue.clone(), runner, "core-test", Duration::from_millis(50));
    let lease = c
        .state
        .queue
        .claim("core-test")
        .await
        .unwrap()
        .expect("the job is claimable");
    worker.run_one(lease).await;
    let done = access::job(&c.state, &ada, &job.id, Scope::DatasetsRead).await.unwrap();
    assert_eq!(
        done.state,
        JobState::Succeeded,
        "{:?} {:?}",
        done.error_code,
        done.error
    );
    let report = listings::output(&done, "report.json").unwrap();
    let report = Report::from_slice(&c.state.storage.get_bytes(&report.key).await.unwrap()).unwrap();
    assert_eq!(report.outputs["synthetic"].rows, 2000);
    // The report names the dataset, never the worker's file.
    let input = report.input.as_ref().unwrap();
    assert_eq!(input.path.as_deref(), Some(format!("dataset {}", d.id).as_str()));
    assert!(report.summary.privacy_score.is_some() && report.summary.quality_score.is_some());
    let summary = JobView::of(&done).summary;
    assert_eq!(
        summary["privacy.Privacy Score"].as_f64(),
        report.summary.privacy_score,
        "the job's summary and its report agree"
    );
}

/// A succeeded job of `p` whose outputs are the given report and a twin.
async fn finished_job(state: &AppState, p: &Principal, report: &[u8]) -> String {
    let meta = RequestMeta::default();
    let job = state
        .queue
        .submit(&meta, p, jobs::KIND, &serde_json::json!({"pipeline": "quickstart"}))
        .await
        .unwrap();
    let lease = state.queue.claim("w").await.unwrap().unwrap();
    let mut files = Vec::new();
    let report_key = format!("outputs/{}/{}/a1/report.json", p.account_id, job.id);
    state
        .storage
        .put_bytes(&report_key, report.to_vec().into())
        .await
        .unwrap();
    files.push(OutputFile {
        name: "report.json".into(),
        key: report_key,
        size: report.len() as u64,
        media_type: "application/json".into(),
    });
    let csv_key = format!("outputs/{}/{}/a1/synthetic.csv", p.account_id, job.id);
    let csv = b"a,b\n1,2\n".to_vec();
    state.storage.put_bytes(&csv_key, csv.clone().into()).await.unwrap();
    files.push(OutputFile {
        name: "synthetic.csv".into(),
        key: csv_key,
        size: csv.len() as u64,
        media_type: "text/csv".into(),
    });
    state
        .queue
        .finish_succeeded(
            &lease,
            &Manifest {
                files,
                summary: serde_json::Value::Null,
            },
        )
        .await
        .unwrap();
    job.id
}

fn report_with(privacy: Option<f64>, failed: &[&str]) -> Vec<u8> {
    let report = serde_json::json!({
        "report_version": doppel_host::report::REPORT_VERSION,
        "doppel": {"version": "test"},
        "pipeline": {"name": "quickstart", "file": "quickstart.toml"},
        "finished_at": "2026-12-04T00:00:00Z",
        "elapsed_ms": 1.0,
        "input": null,
        "summary": {
            "privacy_score": privacy,
            "quality_score": 0.9,
            "pii_columns": [],
            "scores": {},
            "failed_rules": failed.iter().map(|r| serde_json::json!({"stage": "gdpr", "rule": r, "title": "t"})).collect::<Vec<_>>(),
        },
        "outputs": {},
        "stages": [],
    });
    // The test's report is a report this doppel reads.
    Report::from_slice(report.to_string().as_bytes()).unwrap();
    report.to_string().into_bytes()
}

fn listing(job_id: &str) -> ListJob {
    ListJob {
        job_id: job_id.into(),
        output: None,
        title: "Census twin".into(),
        description: "A twin.".into(),
        tags: vec!["census".into()],
        category: "demographics".into(),
        price_minor: 1500,
        currency: "EUR".into(),
        license: "CC-BY-4.0".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_gate_reads_the_typed_report() {
    let c = core().await;
    let seller = user(&c.state, "seller@example.com").await;
    let meta = RequestMeta::default();
    let refused = |r: doppel_platform::Result<doppel_market::Listing>| match r {
        Err(Error::Refused { code, message }) => {
            assert_eq!(code, "listing_refused");
            message
        }
        other => panic!("{other:?}"),
    };

    // A report whose privacy score sits under another key (a renamed
    // field, an older writer) is not read as "no problem".
    let renamed = serde_json::json!({"summary": {"scores": {"privacy.Privacy Score": 95.0}, "failed_rules": []}});
    let job = finished_job(&c.state, &seller, renamed.to_string().as_bytes()).await;
    let m = refused(listings::list_job(&c.state, &meta, &seller, listing(&job)).await);
    assert!(m.contains("cannot be read"), "{m}");

    let job = finished_job(&c.state, &seller, &report_with(None, &[])).await;
    let m = refused(listings::list_job(&c.state, &meta, &seller, listing(&job)).await);
    assert!(m.contains("no privacy score"), "{m}");

    let job = finished_job(&c.state, &seller, &report_with(Some(30.0), &[])).await;
    refused(listings::list_job(&c.state, &meta, &seller, listing(&job)).await);

    let job = finished_job(&c.state, &seller, &report_with(Some(85.0), &["GDPR-ANON"])).await;
    let m = refused(listings::list_job(&c.state, &meta, &seller, listing(&job)).await);
    assert!(m.contains("GDPR-ANON"), "{m}");

    let job = finished_job(&c.state, &seller, &report_with(Some(85.0), &[])).await;
    let listed = listings::list_job(&c.state, &meta, &seller, listing(&job))
        .await
        .unwrap();
    assert_eq!((listed.privacy_score, listed.quality_score), (85.0, Some(0.9)));

    // A job that has not succeeded has nothing to list.
    let running = c
        .state
        .queue
        .submit(
            &meta,
            &seller,
            jobs::KIND,
            &serde_json::json!({"pipeline": "quickstart"}),
        )
        .await
        .unwrap();
    assert!(matches!(
        listings::list_job(&c.state, &meta, &seller, listing(&running.id)).await,
        Err(Error::NotReady {
            code: "job_not_finished",
            ..
        })
    ));
}

/// Every method a person can pick runs a shipped pipeline that has the
/// stages its form's overrides touch; methods this build lacks say why and
/// map to nothing. And the upload rules every door applies hold here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_map_to_shipped_pipelines_and_uploads_are_accepted_by_one_rule() {
    use doppel_app::methods::{self, Checks};
    let c = core().await;
    let all = methods::methods(&c.state);
    assert_eq!(
        all.iter().map(|m| m.id).collect::<Vec<_>>(),
        ["cart", "copula", "privsyn", "ctgan", "tvae", "dp-tvae"]
    );
    for m in &all {
        for checks in [Checks::Both, Checks::Hipaa, Checks::Gdpr] {
            match methods::pipeline_for(&c.state, m.id, checks) {
                None => assert!(m.unavailable.is_some(), "{} is available but maps nowhere", m.id),
                Some((pipeline, synth)) => {
                    let text = doppel_host::shipped::find(pipeline)
                        .unwrap_or_else(|| panic!("{pipeline} is not shipped"))
                        .text;
                    for stage in [synth, "train", "holdout", "report"] {
                        assert!(text.contains(&format!("[stages.{stage}]")), "{pipeline} lacks {stage}");
                    }
                    let dp_stage = text.contains("builtin:privsyn") || text.contains("builtin:dp-tvae");
                    assert_eq!(m.dp, dp_stage, "{}", m.id);
                }
            }
        }
    }
    assert_eq!(
        methods::pipeline_for(&c.state, "copula", Checks::Hipaa).map(|p| p.0),
        Some("hipaa")
    );
    assert_eq!(
        methods::pipeline_for(&c.state, "cart", Checks::Hipaa).map(|p| p.0),
        Some("quickstart")
    );
    assert_eq!(
        methods::pipeline_for(&c.state, "copula", Checks::Both).map(|p| p.0),
        Some("copula")
    );
    for (id, pipeline) in [("tvae", "tvae"), ("dp-tvae", "dp-tvae")] {
        let m = all.iter().find(|m| m.id == id).unwrap();
        assert_eq!(m.pipeline, pipeline, "{id}: its pipeline is shipped");
        assert_eq!(
            m.unavailable.is_some(),
            c.state.catalog.builtin(id).is_none(),
            "{id}: missing exactly when the build lacks it"
        );
    }
    assert!(all.iter().find(|m| m.id == "dp-tvae").unwrap().dp);
    // Each method lists what a job may set, from the generator's schema:
    // tuning, never what voids a guarantee or copies rows.
    let names = |id: &str| -> Vec<String> {
        all.iter()
            .find(|m| m.id == id)
            .unwrap()
            .params
            .iter()
            .map(|p| p.name.clone())
            .collect()
    };
    for id in ["cart", "copula", "privsyn"] {
        let n = names(id);
        assert!(
            n.contains(&"rows".to_owned()) && n.contains(&"seed".to_owned()),
            "{id}: {n:?}"
        );
    }
    assert!(!names("cart").contains(&"allow_copies".to_owned()));
    assert!(!names("privsyn").contains(&"reproducible_noise".to_owned()));
    let epsilon = all
        .iter()
        .find(|m| m.id == "privsyn")
        .unwrap()
        .params
        .iter()
        .find(|p| p.name == "epsilon")
        .unwrap();
    assert_eq!(
        (epsilon.kind, epsilon.minimum, epsilon.maximum, epsilon.default.clone()),
        ("number", Some(0.001), Some(100.0), Some(serde_json::json!(1.0)))
    );
    assert_eq!(methods::pipelines_running("copula"), ["copula", "gdpr", "hipaa"]);
    assert_eq!(methods::generator_stage("dp"), Some(("synth", "privsyn")));
    assert_eq!(methods::generator_stage("sample"), None);

    let p = user(&c.state, "a@example.com").await;
    let (format, name) = datasets::accept(&c.state, &p, "C:\\exports\\Q3.xlsx", None, 10, None).unwrap();
    assert_eq!((format, name.as_str()), (Format::Xlsx, "Q3.xlsx"));
    assert_eq!(
        datasets::accept(&c.state, &p, "rows.json", None, 10, Some("  named ")).unwrap(),
        (Format::Json, "named".to_owned())
    );
    let too_big = c.state.settings.limits.upload_max_mb * 1024 * 1024 + 1;
    assert_eq!(
        datasets::accept(&c.state, &p, "a.csv", None, too_big, None)
            .unwrap_err()
            .code(),
        "too_large"
    );
    assert_eq!(
        datasets::accept(&c.state, &p, "a.doc", None, 1, None)
            .unwrap_err()
            .code(),
        "unknown_format"
    );
    assert!(
        datasets::accept(&c.state, &p, "a.csv", None, 1, Some("ds_x")).is_err(),
        "the name rule"
    );
    assert!(
        datasets::accept(&c.state, &p, "a.csv", None, 1, Some("   ")).is_err(),
        "a blank name given is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_is_chosen_by_name_with_parameters_checked_against_its_schema() {
    use doppel_app::jobs::{GeneratorRequest, PipelineJob};
    use serde_json::{Value, json};
    let c = core().await;
    let ada = user(&c.state, "ada@example.com").await;
    let d = upload(&c.state, &ada, "adult.csv", "adult").await.unwrap();
    let meta = RequestMeta::default();
    let choose = |name: &str, params: Value, pipeline: Option<&str>| JobRequest {
        pipeline: pipeline.map(str::to_owned),
        generator: Some(GeneratorRequest {
            name: name.to_owned(),
            params: params.as_object().unwrap().clone().into_iter().collect(),
        }),
        dataset_id: Some(d.id.clone()),
        model: None,
        overrides: Vec::new(),
        csv: false,
    };

    // privsyn runs the `dp` pipeline with ε as asked, and the dataset's
    // budget is charged that ε before the job exists.
    let job = jobs::submit(
        &c.state,
        &meta,
        &ada,
        choose("privsyn", json!({"epsilon": 0.5, "rows": 500}), None),
    )
    .await
    .unwrap();
    let view = JobView::of(&job);
    assert_eq!(
        (view.pipeline.as_str(), view.generator.as_deref()),
        ("dp", Some("privsyn"))
    );
    let spec: PipelineJob = serde_json::from_value(job.spec.clone()).unwrap();
    assert!(
        spec.overrides.contains(&"synth.epsilon=0.5".to_owned()),
        "{:?}",
        spec.overrides
    );
    assert!(
        spec.overrides.contains(&"synth.rows=500".to_owned()),
        "{:?}",
        spec.overrides
    );
    let ledger = doppel_platform::privacy::ledger(&c.state.db, c.state.settings.privacy, &d.owner_id, &d.name)
        .await
        .unwrap();
    assert!((ledger.spent.epsilon - 0.5).abs() < 1e-12, "{ledger:?}");

    // A generator with one of the pipelines that run it; a job naming only
    // a pipeline still shows the generator it runs.
    let job = jobs::submit(&c.state, &meta, &ada, choose("copula", json!({}), Some("hipaa")))
        .await
        .unwrap();
    assert_eq!(JobView::of(&job).pipeline, "hipaa");
    let job = jobs::submit(&c.state, &meta, &ada, request(&d.id, &[])).await.unwrap();
    assert_eq!(JobView::of(&job).generator.as_deref(), Some("cart"));

    // Everything else is refused before a job exists, naming the field.
    let mut refusals = vec![
        (
            "privsyn",
            json!({"epsilon": 1000.0}),
            None,
            "generator.params.epsilon",
            "at most 100",
        ),
        (
            "privsyn",
            json!({"epsilon": "lots"}),
            None,
            "generator.params.epsilon",
            "must be a number",
        ),
        // Voids the guarantee: not a job's to set.
        (
            "privsyn",
            json!({"reproducible_noise": true}),
            None,
            "generator.params.reproducible_noise",
            "no parameter",
        ),
        (
            "cart",
            json!({"allow_copies": true}),
            None,
            "generator.params.allow_copies",
            "no parameter",
        ),
        (
            "cart",
            json!({"path": "/etc/passwd"}),
            None,
            "generator.params.path",
            "no parameter",
        ),
        (
            "cart",
            json!({"rows": {"n": 1}}),
            None,
            "generator.params.rows",
            "expected a string, number",
        ),
        (
            "cart",
            json!({"rows": 2.5}),
            None,
            "generator.params.rows",
            "must be an integer",
        ),
        ("cart", json!({"rows": 0}), None, "generator.params.rows", "at least 1"),
        (
            "privsyn",
            json!({}),
            Some("quickstart"),
            "pipeline",
            "runs the cart generator",
        ),
        ("privsyn", json!({}), Some("sample"), "pipeline", "no generator"),
        ("privsyn", json!({}), Some("nope"), "pipeline", "no shipped pipeline"),
        ("gan", json!({}), None, "generator", "no generator `gan`"),
    ];
    if c.state.catalog.builtin("tvae").is_none() {
        refusals.push(("tvae", json!({}), None, "generator", "--features torch"));
        refusals.push(("dp-tvae", json!({}), None, "generator", "--features torch"));
    }
    let many: serde_json::Map<String, Value> = (0..33).map(|i| (format!("k{i}"), json!(1))).collect();
    refusals.push(("cart", Value::Object(many), None, "generator.params", "at most 32"));
    let long: serde_json::Map<String, Value> = [("x".repeat(100), json!(1))].into_iter().collect();
    refusals.push((
        "cart",
        Value::Object(long),
        None,
        "generator.params",
        "at most 64 bytes",
    ));
    for (name, params, pipeline, field, says) in refusals {
        let what = format!("{name} {params} {pipeline:?}");
        match jobs::submit(&c.state, &meta, &ada, choose(name, params, pipeline)).await {
            Err(SubmitError::Platform(Error::Invalid { field: f, message })) => {
                assert_eq!(f, field, "{what}: {message}");
                assert!(message.contains(says), "{what}: {message}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // The server's row cap applies to a generator's rows as to an override.
    match jobs::submit(
        &c.state,
        &meta,
        &ada,
        choose("cart", json!({"rows": 900_000_000}), None),
    )
    .await
    {
        Err(SubmitError::NotAllowed { field, .. }) => assert_eq!(field, "synth.rows"),
        other => panic!("{other:?}"),
    }
    let neither = JobRequest {
        generator: None,
        pipeline: None,
        ..request(&d.id, &[])
    };
    match jobs::submit(&c.state, &meta, &ada, neither).await {
        Err(SubmitError::Platform(Error::Invalid { field, .. })) => assert_eq!(field, "pipeline"),
        other => panic!("{other:?}"),
    }
    // Refusals spent nothing.
    let after = doppel_platform::privacy::ledger(&c.state.db, c.state.settings.privacy, &d.owner_id, &d.name)
        .await
        .unwrap();
    assert_eq!(after.spent.epsilon, ledger.spent.epsilon);
}
