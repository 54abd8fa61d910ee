//! CTGAN end to end, from the CLI and as a server job (`--features torch`).
#![cfg(feature = "torch")]

use serde_json::{Value, json};

use crate::server::{Server, account, api_key, follow, post, upload};
use crate::{doppel, output_of, parquet_schema_and_rows};

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
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let synth = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "synth")
        .unwrap();
    assert_eq!(synth["result"]["model"]["generator"], "ctgan");
    let notes = synth["result"]["model"]["notes"].to_string();
    assert!(notes.contains("2 epochs on Cpu"), "{notes}");
    assert!(stdout.contains("Quality Score"), "{stdout}");
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
                "overrides": ["synth.epochs=2", "synth.device=\"cpu\""]}),
    );
    assert_eq!(status, 201, "{job}");
    let events = follow(&s, &key, job["id"].as_str().unwrap());
    let last = events.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");
    assert!(
        last["summary"]["quality.Quality Score"].as_f64().unwrap() > 0.5,
        "{last}"
    );
}
