//! Differentially private twins, from the CLI and as server jobs, with the
//! dataset's privacy budget refusing an overspend before a row is read.

use serde_json::{Value, json};

use crate::server::{Server, account, api_key, follow, get, http, post, upload};
use crate::{doppel, output_of, parquet_schema_and_rows, read_report, report_stage};

#[test]
fn the_dp_pipeline_writes_a_twin_and_reports_the_budget_spent() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output_of(
        doppel()
            .args(["run", "pipelines/dp.toml", "--input", "data/adult.csv", "--out"])
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    let (schema, rows) = parquet_schema_and_rows(&out.path().join("synthetic.parquet"));
    assert_eq!(schema.len(), 15);
    // The row count is the noisy size of the 26,049 training rows, never the
    // exact one.
    assert!(rows.abs_diff(26_049) < 1_000, "{rows} rows");
    let report = read_report(out.path());
    let synth = report_stage(&report, "synth");
    let dp = &synth["result"]["model"]["privacy"];
    assert!((dp["epsilon"].as_f64().unwrap() - 1.0).abs() < 1e-6, "{dp}");
    assert_eq!(dp["delta"].as_f64().unwrap(), 1e-9);
    let steps: f64 = dp["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rho"].as_f64().unwrap())
        .sum();
    assert!((steps - dp["rho"].as_f64().unwrap()).abs() < 1e-12);
    let quality = report["summary"]["scores"]["quality.Quality Score"].as_f64().unwrap();
    assert!(quality > 0.7, "quality {quality}\n{stdout}");
    // The PDF states the guarantee.
    let pdf = lopdf::Document::load(out.path().join("report.pdf")).unwrap();
    let pages: Vec<u32> = pdf.get_pages().keys().copied().collect();
    let text = pdf.extract_text(&pages).unwrap().replace('\n', " ");
    assert!(text.contains("differentially private"), "{text}");
}

fn put(s: &Server, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let resp = http().put(s.url(path)).bearer_auth(token).json(body).send().unwrap();
    (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
}

#[test]
fn a_dp_job_over_the_datasets_budget_is_refused_before_it_runs() {
    let s = Server::start(&["serve"], &[]);
    let session = account(&s, "dp@example.com");
    let key = api_key(&s, &session, &["datasets:read", "datasets:write", "jobs:run"]);
    let (status, ds) = upload(&s, &key, "data/adult.csv", None);
    assert_eq!(status, 201, "{ds}");
    let id = ds["id"].as_str().unwrap();

    let (status, ledger) = get(&s, &format!("/v1/datasets/{id}/privacy"), Some(&key));
    assert_eq!(status, 200, "{ledger}");
    assert_eq!(
        ledger["budget"],
        json!({"epsilon": 10.0, "delta": 1e-6}),
        "the default budget"
    );
    let (status, ledger) = put(
        &s,
        &format!("/v1/datasets/{id}/privacy"),
        &key,
        &json!({"epsilon": 1.5, "delta": 1e-6}),
    );
    assert_eq!(status, 200, "{ledger}");

    let (status, job) = post(&s, "/v1/jobs", Some(&key), &json!({"pipeline": "dp", "dataset_id": id}));
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_str().unwrap().to_owned();
    // ε = 1 more would make 2 > 1.5: refused now, not after a run.
    let (status, refused) = post(&s, "/v1/jobs", Some(&key), &json!({"pipeline": "dp", "dataset_id": id}));
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["code"], "privacy_budget_exceeded");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("only ε = 0.5"), "{message}");
    // A smaller ε fits exactly; a non-DP pipeline needs no budget.
    let (status, small) = post(
        &s,
        "/v1/jobs",
        Some(&key),
        &json!({"pipeline": "dp", "dataset_id": id, "overrides": ["synth.epsilon=0.5"]}),
    );
    assert_eq!(status, 201, "{small}");
    let (status, copula) = post(
        &s,
        "/v1/jobs",
        Some(&key),
        &json!({"pipeline": "pii-scan", "dataset_id": id}),
    );
    assert_eq!(status, 201, "{copula}");

    let (_, ledger) = get(&s, &format!("/v1/datasets/{id}/privacy"), Some(&key));
    assert!(
        (ledger["spent"]["epsilon"].as_f64().unwrap() - 1.5).abs() < 1e-9,
        "{ledger}"
    );
    assert_eq!(ledger["remaining"]["epsilon"].as_f64().unwrap(), 0.0);
    let charges = ledger["charges"].as_array().unwrap();
    assert_eq!(charges.len(), 2);
    assert_eq!(charges[0]["job_id"], json!(job_id));
    assert_eq!(
        (charges[0]["stage"].as_str(), charges[0]["mechanism"].as_str()),
        (Some("synth"), Some("privsyn"))
    );

    let events = follow(&s, &key, &job_id);
    let last = events.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");
    let (_, report) = get(&s, &format!("/v1/jobs/{job_id}/report"), Some(&key));
    let synth = report_stage(&report, "synth");
    assert!((synth["result"]["model"]["privacy"]["epsilon"].as_f64().unwrap() - 1.0).abs() < 1e-6);

    // Someone else can neither read nor raise this budget.
    let other = account(&s, "mallory@example.com");
    let (status, _) = get(&s, &format!("/v1/datasets/{id}/privacy"), Some(&other));
    assert_eq!(status, 404);
    let (status, _) = put(
        &s,
        &format!("/v1/datasets/{id}/privacy"),
        &other,
        &json!({"epsilon": 100.0, "delta": 1e-6}),
    );
    assert_eq!(status, 404);
    let (status, bad) = put(
        &s,
        &format!("/v1/datasets/{id}/privacy"),
        &key,
        &json!({"epsilon": -1.0, "delta": 1e-6}),
    );
    assert_eq!((status, bad["code"].as_str()), (400, Some("invalid_request")), "{bad}");
}

/// `GET /v1/generators` lists what this build has and what a job may set;
/// a job that names a generator runs its shipped pipeline with the
/// parameters given, charged to the dataset's budget like any DP job.
#[test]
fn a_generator_chosen_by_name_runs_as_a_rest_job() {
    let s = Server::start(&["serve"], &[]);
    let session = account(&s, "gen@example.com");
    let key = api_key(&s, &session, &["datasets:read", "datasets:write", "jobs:run"]);

    let (status, generators) = get(&s, "/v1/generators", None);
    assert_eq!(status, 200, "{generators}");
    let list = generators.as_array().unwrap();
    let ids: Vec<&str> = list.iter().filter_map(|g| g["id"].as_str()).collect();
    assert_eq!(ids, ["cart", "copula", "privsyn", "ctgan", "tvae", "dp-tvae"]);
    let one = |id: &str| list.iter().find(|g| g["id"] == id).unwrap().clone();
    let privsyn = one("privsyn");
    assert_eq!(
        (&privsyn["dp"], &privsyn["available"], &privsyn["pipeline"]),
        (&json!(true), &json!(true), &json!("dp"))
    );
    let params = privsyn["params"].as_array().unwrap();
    let epsilon = params.iter().find(|p| p["name"] == "epsilon").unwrap();
    assert_eq!(
        (
            &epsilon["type"],
            &epsilon["minimum"],
            &epsilon["maximum"],
            &epsilon["default"]
        ),
        (&json!("number"), &json!(0.001), &json!(100.0), &json!(1.0))
    );
    assert!(params.iter().all(|p| p["name"] != "reproducible_noise"), "{privsyn}");
    assert_eq!(one("copula")["pipelines"], json!(["copula", "gdpr", "hipaa"]));
    for neural in ["ctgan", "tvae", "dp-tvae"] {
        let g = one(neural);
        assert_eq!(g["available"], json!(cfg!(feature = "torch")), "{g}");
        if !cfg!(feature = "torch") {
            let why = g["unavailable_reason"].as_str().unwrap();
            assert!(why.contains("--features torch"), "{why}");
            assert_eq!(g["params"], json!([]), "{g}");
        }
    }

    let (status, ds) = upload(&s, &key, "data/adult.csv", None);
    assert_eq!(status, 201, "{ds}");
    let id = ds["id"].as_str().unwrap();
    let (status, job) = post(
        &s,
        "/v1/jobs",
        Some(&key),
        &json!({"dataset_id": id, "generator": {"name": "privsyn", "params": {"epsilon": 0.25, "seed": 3}}}),
    );
    assert_eq!(status, 201, "{job}");
    assert_eq!((&job["pipeline"], &job["generator"]), (&json!("dp"), &json!("privsyn")));
    let job_id = job["id"].as_str().unwrap().to_owned();
    let (_, ledger) = get(&s, &format!("/v1/datasets/{id}/privacy"), Some(&key));
    assert!(
        (ledger["spent"]["epsilon"].as_f64().unwrap() - 0.25).abs() < 1e-12,
        "{ledger}"
    );

    // A parameter outside the schema, a bound or the generator's pipelines
    // is a 400 naming it, and charges nothing.
    for (body, field) in [
        (
            json!({"dataset_id": id, "generator": {"name": "privsyn", "params": {"epsilon": 1000}}}),
            "generator.params.epsilon:",
        ),
        (
            json!({"dataset_id": id, "generator": {"name": "privsyn", "params": {"reproducible_noise": true}}}),
            "generator.params.reproducible_noise:",
        ),
        (
            json!({"dataset_id": id, "pipeline": "quickstart", "generator": {"name": "privsyn"}}),
            "pipeline:",
        ),
        (json!({"dataset_id": id, "generator": {"name": "gpt"}}), "generator:"),
        (json!({"dataset_id": id}), "pipeline:"),
    ] {
        let (status, err) = post(&s, "/v1/jobs", Some(&key), &body);
        assert_eq!(
            (status, err["code"].as_str()),
            (400, Some("invalid_request")),
            "{body} {err}"
        );
        assert!(err["message"].as_str().unwrap().starts_with(field), "{body} {err}");
    }
    let (_, ledger) = get(&s, &format!("/v1/datasets/{id}/privacy"), Some(&key));
    assert!(
        (ledger["spent"]["epsilon"].as_f64().unwrap() - 0.25).abs() < 1e-12,
        "{ledger}"
    );

    let events = follow(&s, &key, &job_id);
    let last = events.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");
    let (_, report) = get(&s, &format!("/v1/jobs/{job_id}/report"), Some(&key));
    let synth = report_stage(&report, "synth");
    assert!((synth["result"]["model"]["privacy"]["epsilon"].as_f64().unwrap() - 0.25).abs() < 1e-6);
}

/// `doppel run pipelines/dp.toml` on Adult, counting on `engine`.
fn dp_on(engine: &str) -> std::process::Command {
    let mut cmd = doppel();
    cmd.args([
        "run",
        "pipelines/dp.toml",
        "--input",
        "data/adult.csv",
        "--engine",
        engine,
    ]);
    cmd
}

/// `doppel engine standalone` runs a Ballista scheduler and two executors;
/// the dp pipeline counted there writes the twin the local run writes and
/// states the same spend, with a note saying where it counted.
#[test]
fn the_dp_pipeline_counted_on_a_ballista_cluster_writes_the_local_twin() {
    use std::io::BufRead;

    /// Stops the cluster however the test ends.
    struct Cluster(std::process::Child);
    impl Drop for Cluster {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut cluster = Cluster(
        doppel()
            .args(["engine", "standalone", "--executors", "2", "--vcores", "1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut url = String::new();
    std::io::BufReader::new(cluster.0.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_owned();
    assert!(url.starts_with("ballista://localhost:"), "{url}");

    let run = |engine: &str| {
        let out = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let (code, _, stderr) = output_of(
            dp_on(engine)
                .args(["--set", "synth.reproducible_noise=true", "--engine-scratch"])
                .arg(scratch.path())
                .arg("--out")
                .arg(out.path()),
        );
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(
            std::fs::read_dir(scratch.path()).unwrap().count(),
            0,
            "the staged rows are removed"
        );
        let twin = std::fs::read(out.path().join("synthetic.parquet")).unwrap();
        let report = read_report(out.path());
        (twin, report_stage(&report, "synth")["result"]["model"].clone())
    };
    let (twin_cluster, model_cluster) = run(&url);
    let (twin_local, model_local) = run("local");
    drop(cluster);
    assert!(twin_cluster == twin_local, "the same synthetic.parquet, byte for byte");
    assert_eq!(model_cluster["privacy"], model_local["privacy"]);
    let notes = model_cluster["notes"].to_string();
    assert!(notes.contains(&format!("counted on {url}")), "{notes}");
}

#[test]
fn an_engine_that_is_not_one_is_refused_before_anything_runs() {
    let out = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output_of(dp_on("spark://x:7077").arg("--out").arg(out.path()));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("expected `local` or `ballista://host:port`"),
        "{stderr}"
    );
    assert!(!out.path().join("report.json").exists());
    let data = tempfile::tempdir().unwrap();
    let (code, _, stderr) = output_of(
        doppel()
            .args(["serve", "--data-dir"])
            .arg(data.path())
            .env("DOPPEL__ENGINE__URL", "ballista://"),
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("engine.url"), "{stderr}");
}
