//! CTGAN end to end, from the CLI and as a server job (`--features torch`).
#![cfg(feature = "torch")]

use serde_json::{Value, json};

use crate::server::{Server, account, api_key, follow, post, upload};
use crate::{doppel, output_of, parquet_schema_and_rows, read_report, report_stage};

#[test]
fn the_ctgan_pipeline_runs_from_the_cli() {
    let out = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output_of(
        doppel()
            .args(["run", "pipelines/ctgan.toml", "--input", "data/adult.csv"])
            .args(["--set", "synth.epochs=2", "--set", "synth.device=cpu", "--out"])
            .arg(out.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    let (schema, rows) = parquet_schema_and_rows(&out.path().join("synthetic.parquet"));
    assert_eq!((schema.len(), rows), (15, 32_561));
    let report = read_report(out.path());
    let synth = report_stage(&report, "synth");
    assert_eq!(synth["result"]["model"]["generator"], "ctgan");
    let notes = synth["result"]["model"]["notes"].to_string();
    assert!(notes.contains("2 epochs on Cpu"), "{notes}");
    assert!(stdout.contains("Quality Score"), "{stdout}");

    // Fit once, sample many: the saved model samples again, without the
    // real table, the same rows for the same seed.
    let model = out.path().join("model-synth.safetensors");
    assert_eq!(
        synth["result"]["model"]["saved_model"]["file"],
        "model-synth.safetensors"
    );
    assert!(std::fs::metadata(&model).unwrap().len() > 100_000);
    let sample = |seed: &str| {
        let more = tempfile::tempdir().unwrap();
        let (code, _, stderr) = output_of(
            doppel()
                .args(["run", "pipelines/sample.toml", "--input"])
                .arg(&model)
                .args([
                    "--set",
                    "synth.rows=5000",
                    "--set",
                    &format!("synth.seed={seed}"),
                    "--out",
                ])
                .arg(more.path()),
        );
        assert_eq!(code, 0, "{stderr}");
        let bytes = std::fs::read(more.path().join("synthetic.parquet")).unwrap();
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(more.path().join("report.json")).unwrap()).unwrap();
        (bytes, report)
    };
    let (a, report) = sample("7");
    let (b, _) = sample("7");
    let (c, _) = sample("8");
    assert_eq!(a, b, "same model, same seed, same table");
    assert_ne!(a, c);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.parquet"), &a).unwrap();
    let (schema2, rows2) = parquet_schema_and_rows(&dir.path().join("t.parquet"));
    assert_eq!((schema2, rows2), (schema, 5000), "the real table's columns and types");
    let stage = &report["stages"][0];
    assert_eq!(stage["result"]["model"]["loaded_from"], "model-synth.safetensors");
    assert_eq!(stage["result"]["model"]["generator"], "ctgan");
}

#[test]
fn a_ctgan_job_runs_on_the_server() {
    let s = Server::start(&["serve"], &[]);
    let session = account(&s, "gan@example.com");
    let key = api_key(&s, &session, &["datasets:read", "datasets:write", "jobs:run"]);
    let (status, ds) = upload(&s, &key, "data/adult.csv", None);
    assert_eq!(status, 201, "{ds}");
    let (status, job) = post(
        &s,
        "/v1/jobs",
        Some(&key),
        &json!({"pipeline": "ctgan", "dataset_id": ds["id"],
                "overrides": ["synth.epochs=2"]}),
    );
    assert_eq!(status, 201, "{job}");
    let events = follow(&s, &key, job["id"].as_str().unwrap());
    let last = events.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");
    assert!(
        last["summary"]["quality.Quality Score"].as_f64().unwrap() > 0.5,
        "{last}"
    );
    assert!(
        last["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "model-synth.safetensors"),
        "{last}"
    );

    // A later job samples the saved model: no dataset, no training.
    let (status, sample) = post(
        &s,
        "/v1/jobs",
        Some(&key),
        &json!({"pipeline": "sample", "model": {"job_id": job["id"]}, "overrides": ["synth.rows=1234"]}),
    );
    assert_eq!(status, 201, "{sample}");
    assert_eq!(sample["model_job_id"], job["id"]);
    assert!(sample.get("dataset_id").is_none(), "{sample}");
    let events = follow(&s, &key, sample["id"].as_str().unwrap());
    let last = events.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(last["summary"]["outputs"]["synthetic"]["rows"], 1234, "{last}");

    // Another account cannot sample it: the job does not exist for them.
    let other = account(&s, "other@example.com");
    let other_key = api_key(&s, &other, &["datasets:read", "jobs:run"]);
    let (status, err) = post(
        &s,
        "/v1/jobs",
        Some(&other_key),
        &json!({"pipeline": "sample", "model": {"job_id": job["id"]}}),
    );
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("no such job"), "{err}");
}
